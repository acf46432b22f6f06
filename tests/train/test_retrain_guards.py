"""Retraining guarded: not without enough new labelled data, and (when asked) not promoted without a person's
approval given through Prefect's pause/input mechanism."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ferry import demo_data
from ferry.registry import Registry
from ferry.train import steps as core

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(churn_champion: dict[str, str], tmp_path: Path) -> Registry:
    shutil.copytree(churn_champion["registry"], tmp_path / "registry")
    return Registry(str(tmp_path / "registry"))


def ingest(tmp_path: Path, data: Path, schema: str) -> Path:
    run_dir = core.new_run_dir(tmp_path / "runs")
    core.ingest(str(data), schema, run_dir)
    return run_dir


def test_new_rows_are_told_by_timestamp_and_by_data_hash(
    registry: Registry, churn_champion: dict[str, str], tmp_path: Path
) -> None:
    same = core.new_labelled_rows(
        ingest(tmp_path, Path(churn_champion["data"]), churn_champion["schema"]), registry, "online/champion"
    )
    assert same.rows == 0
    assert "the same data" in same.how

    frame = pd_concat(
        demo_data.make_churn(300, seed=90, start="2024-06-01", days=30),  # older than anything the champion saw
        demo_data.make_churn(700, seed=91, start="2027-01-01", days=30),  # newer
    )
    later = tmp_path / "later.parquet"
    frame.to_parquet(later, index=False)
    found = core.new_labelled_rows(ingest(tmp_path, later, churn_champion["schema"]), registry, "online/champion")
    assert (found.rows, found.total) == (700, 1000)
    assert "signup_at after" in found.how
    assert (
        core.new_labelled_rows(ingest(tmp_path, later, churn_champion["schema"]), registry, "edge/nowhere").rows == 1000
    )


def pd_concat(*frames: Any) -> Any:
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def test_retrain_stops_cleanly_without_enough_new_data(
    prefect_server: None,
    registry: Registry,
    churn_champion: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from ferry_flows.retrain import retrain

    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path / "runs"))
    before = [v.id for v in registry.versions("churn")]
    state = retrain(
        data=churn_champion["data"],
        schema_file=churn_champion["schema"],
        registry_url=registry.url,
        min_new_rows=500,
        return_state=True,
    )
    assert state.is_completed()  # a clean stop, not a failure
    outcome = state.result()
    assert outcome["skipped"].startswith("only 0 new labelled rows")
    assert [v.id for v in registry.versions("churn")] == before  # nothing trained, nothing registered


def flow_run_state(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    async def read() -> Any:
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).state

    return asyncio.run(read())


@pytest.mark.parametrize("approve", [True, False])
def test_a_person_approves_or_rejects_a_paused_retrain(
    prefect_server: None,
    registry: Registry,
    churn_champion: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    approve: bool,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from ferry_flows.retrain import retrain

    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path / "runs"))
    data = demo_data.write_demo(tmp_path / "data", n_rows=5000, seed=93, fmt="parquet")
    champion = registry.channel("churn", "online/champion")
    result: dict[str, Any] = {}

    def run() -> None:
        result["state"] = retrain(
            data=str(data),
            schema_file=churn_champion["schema"],
            registry_url=registry.url,
            require_approval=True,
            approval_timeout_s=600,
            return_state=True,
        )

    worker = threading.Thread(target=run)
    worker.start()

    async def paused_run() -> Any:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            return next((r for r in runs if r.state is not None and r.state.is_paused()), None)

    deadline = time.monotonic() + 300
    paused = None
    while paused is None and worker.is_alive():
        assert time.monotonic() < deadline, "the retrain never paused for approval"
        time.sleep(1)
        paused = asyncio.run(paused_run())
    assert paused is not None, result
    assert registry.channel("churn", "online/champion") == champion  # nothing moves while it waits
    resume_flow_run(paused.id, run_input={"approve": approve, "note": "looked at the gate report"})
    worker.join(timeout=300)
    outcome = result["state"].result()
    assert outcome["approval"]["approved"] is approve
    if approve:
        assert outcome["promoted"] == ["online/champion"]
        assert registry.channel("churn", "online/champion") == outcome["version"]
        assert "approved: looked at the gate report" in registry.audit("churn")[-1].reason
    else:
        assert outcome["promoted"] == []
        assert registry.channel("churn", "online/champion") == champion
