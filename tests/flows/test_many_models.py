"""Two models in one registry drift at different times; the monitor flow (every model) announces each drift, and the
retrain automation from ``prefect.yaml`` (no model named in it) asks for one retrain of each, with that model's
data source and the event's time window. Runs on the session's Prefect server; the retrain runs are asked for, not
run (no worker), so the test reads their parameters."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import copy_clean, serve_rows

from ferry import monitor as core
from ferry.cli.parity import records
from ferry.demo_data import make_churn
from ferry.registry import Registry
from ferry.train.source import resolve_source

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def second_model(registry: Registry, name: str, template: str, work: Path) -> str:
    """The churn champion's files registered as another model, whose schema names its data source."""
    base = registry.get(registry.channel("churn", "online/champion") or "", model="churn")
    work.mkdir(parents=True)
    files = {}
    for fname in base.files:
        data = registry.read_bytes(base, fname)
        if fname == "schema.json":
            data = json.dumps({**json.loads(data), "name": name, "data": template}).encode()
        (work / fname).write_bytes(data)
        files[fname] = work / fname
    vid = registry.register(name, files, dict(base.info)).id
    registry.promote(vid, "online/champion", model=name, reason="test: a second model")
    return vid


async def _deploy_retrain(parameters: dict[str, Any]) -> tuple[Any, Any]:
    """The retrain deployment and its automation as ``prefect deploy`` makes them from prefect.yaml."""
    from prefect.client.orchestration import get_client
    from prefect.events import DeploymentTriggerTypes
    from prefect.flows import load_flow_from_entrypoint
    from pydantic import TypeAdapter

    spec = next(d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"] if d["name"] == "retrain")
    flow = load_flow_from_entrypoint(str(REPO / spec["entrypoint"]))
    async with get_client() as client:
        flow_id = await client.create_flow(flow)
        deployment_id = await client.create_deployment(
            flow_id=flow_id,
            name=f"retrain-{uuid.uuid4().hex[:8]}",
            parameters={**spec["parameters"], **parameters},
            entrypoint=spec["entrypoint"],
            parameter_openapi_schema=flow.parameters.model_dump(),
            enforce_parameter_schema=True,
        )
        (trigger,) = [TypeAdapter(DeploymentTriggerTypes).validate_python(t) for t in spec["triggers"]]
        trigger.set_deployment_id(deployment_id)
        automation = await client.create_automation(trigger.as_automation())
    return deployment_id, automation


async def _runs_of(deployment_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async with get_client() as client:
        only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        runs = await client.read_flow_runs(deployment_filter=only)
    return sorted(runs, key=lambda r: r.created)


def _wait_runs(deployment_id: Any, n: int, timeout_s: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        runs = asyncio.run(_runs_of(deployment_id))
        if len(runs) >= n or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def test_two_models_drifting_at_different_times_each_ask_for_one_retrain_of_their_own(
    prefect_server: None, churn_champion: dict[str, str], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from ferry_flows.monitor import monitor

    registry = copy_clean(churn_champion["registry"], tmp_path / "registry")
    lake = tmp_path / "lake"
    eu_data = f"{lake}/{{model}}/{{start:%Y%m%dT%H%M%S}}-{{end:%Y%m%dT%H%M%S}}/"
    second_model(registry, "churn_eu", eu_data, tmp_path / "eu")
    # churn's data source is in the deployment's parameters; churn_eu's in its schema
    sources = {"churn": f"{lake}/churn-{{start:%Y%m%dT%H%M%S}}-{{end:%Y%m%dT%H%M%S}}.parquet"}
    deployment_id, automation = asyncio.run(_deploy_retrain({"data_sources": sources}))
    settings = core.MonitorSettings(min_rows=100)
    try:
        schema = registry.schema(registry.get(registry.channel("churn", "online/champion") or ""))
        before = datetime.now(UTC)
        serve_rows(registry, records(make_churn(250, seed=71, drift=1.0), schema), model="churn")
        first = monitor(registry_url=registry.url, settings=settings)["models"]
        assert [a["retrain"] for a in first["churn"]["announcements"]] == [True]
        assert first["churn_eu"]["judgements"] == []  # nothing arrived for it yet
        (churn_run,) = _wait_runs(deployment_id, 1)

        serve_rows(registry, records(make_churn(250, seed=72, drift=1.0), schema), model="churn_eu")
        second = monitor(registry_url=registry.url, settings=settings)["models"]
        after = datetime.now(UTC)
        assert [a["retrain"] for a in second["churn_eu"]["announcements"]] == [True]
        assert second["churn"]["judgements"] == []  # nothing new for churn
        _wait_runs(deployment_id, 2)
        # events are acted on in order, so a duplicate of the first would be there by now; a little grace for any
        runs = _wait_runs(deployment_id, 3, timeout_s=2)
    finally:

        async def clean() -> None:
            async with get_client() as client:
                await client.delete_automation(automation)

        asyncio.run(clean())
    assert [r.parameters["model"] for r in runs] == ["churn", "churn_eu"]
    assert runs[0].id == churn_run.id
    assert all(r.created_by is not None and r.created_by.type == "AUTOMATION" for r in runs)
    for run in runs:
        p = run.parameters
        start, end = datetime.fromisoformat(p["window_start"]), datetime.fromisoformat(p["window_end"])
        assert start < end
        assert before <= end <= after
        assert p["promote_to"] == ["online/challenger", "edge/beta"]
        found = resolve_source(
            registry, tmp_path / "run", model=p["model"], data=p.get("data"), data_sources=p["data_sources"],
            window_start=p["window_start"], window_end=p["window_end"],
        )  # fmt: skip
        span = f"{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}"
        expected = {"churn": f"{lake}/churn-{span}.parquet", "churn_eu": f"{lake}/churn_eu/{span}/"}
        assert found.data == expected[p["model"]]
    # the churn window starts where its champion began serving; the second churn_eu window where it did
    moved = {m: datetime.fromisoformat(registry.channels(m)["online/champion"].moved_at) for m in ("churn", "churn_eu")}
    assert [datetime.fromisoformat(r.parameters["window_start"]) for r in runs] == [moved["churn"], moved["churn_eu"]]
