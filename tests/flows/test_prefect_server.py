"""ferry's deployments on a real Prefect server, as the README's "Run it with Prefect Server" section runs them:
``prefect server start``, a process work pool, ``prefect deploy --all``, a worker. Drifted traffic arrives, the
``monitor`` deployment announces it, and the automation from ``prefect.yaml`` runs the ``retrain`` deployment.
Then the retrain's gate table is opened in the server's UI in headless Chromium: its thresholds read as text.
Every process binds 127.0.0.1 and is stopped by its own PID."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from browser_support import dump_dom, table_cells
from helpers import copy_clean, serve_rows

from ferry import demo_data
from ferry.cli.parity import records
from ferry.cli.processes import free_port, stop_process
from ferry.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _wait(what: str, ok: Any, timeout_s: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = ok()
        if value:
            return value
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tails}")


class Stack:
    """A Prefect server and a process worker, with ferry's settings in their environment."""

    def __init__(self, tmp: Path, registry: Registry) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
            "FERRY_CHECKOUT": str(REPO),
            "FERRY_REGISTRY_URL": registry.url,
            "FERRY_WORK_DIR": str(tmp / "runs"),
            "FERRY_MONITOR_MIN_ROWS": "100",
            "FERRY_EDGE_REPO_URL": str(tmp / "edge-repo"),
            "FERRY_EDGE_KEYS_DIR": str(tmp / "edge-keys"),
        }
        self.env.pop("PREFECT_PROFILES_PATH", None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "prefect"), *args],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


@pytest.fixture
def stack(churn_champion: dict[str, str], tmp_path: Path) -> Iterator[tuple[Stack, Registry]]:
    registry = copy_clean(churn_champion["registry"], tmp_path / "registry")
    s = Stack(tmp_path, registry)
    try:
        s.spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(s.port))
        _wait("the Prefect server", s.healthy, 180, s.logs)
        yield s, registry
    finally:
        s.stop()


def _client_call(api: str, fn: Any) -> Any:
    from prefect.client.orchestration import PrefectClient

    async def go() -> Any:
        async with PrefectClient(api) as client:
            return await fn(client)

    return asyncio.run(go())


def test_drift_runs_the_retrain_deployment_through_the_automation(
    stack: tuple[Stack, Registry], tmp_path: Path
) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    s, registry = stack
    schema = demo_data.churn_schema()
    before = {v.id for v in registry.versions("churn")}

    # Fresh labelled data for the retrain (newer than anything the champion saw), in a copy of prefect.yaml whose
    # parameters point at this test's files; the deployments themselves are the real ones.
    labelled = tmp_path / "labelled.parquet"
    demo_data.make_churn(6000, seed=95, drift=0.8, start="2027-01-01").to_parquet(labelled, index=False)
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for d in spec["deployments"]:
        if d["name"] == "retrain":
            d["parameters"]["data"] = str(labelled)
            d["parameters"]["schema_file"] = str(REPO / "examples" / "churn" / "schema.yaml")
        d.pop("schedules", None)  # nothing runs on its own during the test
    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(spec, sort_keys=False))

    s.run("work-pool", "create", "ferry-process", "--type", "process")
    out = s.run("deploy", "--all", "--prefect-file", str(prefect_file))
    assert "retrain" in out
    assert "monitor" in out
    s.spawn("worker", "worker", "start", "--pool", "ferry-process", "--limit", "2")

    # A drifted batch of traffic reaches the online service's prediction log; then the monitor deployment runs.
    serve_rows(registry, records(demo_data.make_churn(600, seed=96, drift=1.0), schema))
    s.run("deployment", "run", "monitor/monitor")

    async def retrain_runs(client: Any) -> list[Any]:
        deployments = await client.read_deployments()
        retrain = next(d for d in deployments if d.name == "retrain")
        runs = await client.read_flow_runs()
        return [r for r in runs if r.deployment_id == retrain.id]

    def finished_retrain() -> Any:
        runs = _client_call(s.api, retrain_runs)
        done = [r for r in runs if r.state is not None and r.state.is_final()]
        return done[0] if done else None

    run = _wait("the automation's retrain run to finish", finished_retrain, 600, s.logs)
    assert run.state.is_completed(), run.state
    assert run.parameters["min_new_rows"] == 500
    assert run.parameters["reason"].startswith("drift: online: ")
    assert run.parameters["data"] == str(labelled)  # the deployment's own parameters fill the rest
    assert run.created_by is not None
    assert run.created_by.type == "AUTOMATION"

    artifacts = _client_call(
        s.api,
        lambda c: c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))),
    )
    assert "churn-retrain-summary" in {a.key for a in artifacts}
    new = {v.id for v in registry.versions("churn")} - before
    assert len(new) == 1
    # Staged: the candidate became the challenger and went to edge/beta (published), not straight to champion.
    (candidate,) = new
    assert run.parameters["promote_to"] == ["online/challenger", "edge/beta"]
    assert registry.channel("churn", "online/challenger") == candidate
    assert registry.channel("churn", "edge/beta") == candidate
    assert registry.channel("churn", "online/champion") not in new
    assert (tmp_path / "edge-repo" / "metadata" / "timestamp.json").exists()
    last = registry.audit("churn")[-1]  # both channels moved as one release: one audit record
    assert (last.action, last.channels) == ("release", ["online/challenger", "edge/beta"])
    assert last.reason.split(": ", 1)[1].startswith("drift: online: ")

    # The gate table in the Prefect UI (a real browser): every threshold reads as written, none is a block quote.
    gate = next(a for a in artifacts if a.key == "churn-gate")
    rows = json.loads(gate.data) if isinstance(gate.data, str) else gate.data
    written = {str(row["threshold"]).replace("\\", "") for row in rows}
    assert any(t.startswith(">= ") for t in written), written
    dom = dump_dom(f"http://127.0.0.1:{s.port}/artifacts/artifact/{gate.id}", tmp_path / "chromium")
    cells = table_cells(dom, "artifact-data-table__cell")
    assert cells, dom[-3000:]
    assert not [text for cell, text in cells if "<blockquote" in cell]
    shown = {text for _, text in cells}
    compared = [t for t in shown if t.startswith((">= ", "<= ", "> ", "< "))]
    assert compared, shown
    assert set(compared) <= written
