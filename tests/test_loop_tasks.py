"""The whole loop for each task beyond binary, at small size: a multiclass model (``examples/defects``, string labels,
a categorical feature) and a regressor (``examples/demand``, with its conformal interval).

One module-scoped world per task, built in the loop's order, one section per step:

1. **train and gate**: every retrain step (the session's ``task_models``: ingest, quality, fit, evaluate, export,
   parity, gate, register);
2. **promote**: to ``online/champion`` (the retrain) and ``edge/stable`` (the bundle is checked before the move,
   then published to a TUF repository);
3. **serve**: a real ``bentoml serve`` of the champion;
4. **score**: ``ferry score`` over the same rows;
5. **edge**: a real ``ferry-edge`` device synced over HTTP from a static host, scoring with its Python API and with
   ``ferry-edge predict``;
6. **monitor**: the service logs every answer, the true labels come back through ``/feedback``, and the monitor
   judges drift and each version's quality on the task's metrics from those logs;
7. **rollout**: a challenger served as a canary is judged against the champion on the task's primary metric.

The tests then hold that the three surfaces give bit-for-bit the same outputs (every class probability and the
class; value, lower and upper), that ``/feedback`` takes the task's truth and refuses anything else, and that the
monitor and the rollout judge what the service answered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from helpers import clone_version
from typer.testing import CliRunner

from ferry import monitor
from ferry.cli import app
from ferry.cli.parity import (
    Scores,
    batch_explanations,
    batch_scores,
    compare,
    edge_scores,
    explanation_key,
    online_explanations,
    online_scores,
    output_columns,
    records,
)
from ferry.cli.processes import Service, StaticHost
from ferry.monitor import rollout
from ferry.monitor import run as one_run
from ferry.online.auth import hash_key
from ferry.publish import open_repository, publish_moved
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.settings import EdgeSettings
from ferry.train.steps import promote_if_passed

pytestmark = pytest.mark.integration

KEY = "loop-tasks-key"
ROWS = 300
EXPLAINED = 20  # rows explained on every surface
TASKS = {"defects": "multiclass", "demand": "regression"}


@pytest.fixture(scope="module", params=sorted(TASKS))
def world(
    request: pytest.FixtureRequest, task_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    name: str = request.param
    root = tmp_path_factory.mktemp(f"loop-{name}")
    shutil.copytree(task_models["root"] / "reg", root / "registry")  # the session's registry stays as it was
    registry = Registry(str(root / "registry"))
    out: dict[str, Any] = {"name": name, "root": root, "registry": registry}

    # -- 1. train and gate ------------------------------------------------------------------------------------
    version = registry.get(task_models[name]["version"].id, model=name)
    assert task_models[name]["gate"]["passed"] is True
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    assert schema.kind == TASKS[name]
    out.update(version=version.id, schema=schema)

    # -- 2. promote ---------------------------------------------------------------------------------------------
    assert registry.channel(name, "online/champion") == version.id  # the retrain promoted it
    moved = promote_if_passed(registry, version, ["edge/stable"], reason="loop test: to the devices")
    assert [m["channel"] for m in moved] == ["edge/stable"]
    edge_settings = EdgeSettings(repo_url=str(root / "repo"), keys_dir=str(root / "keys"))
    published = publish_moved(registry, name, ["edge/stable"], repo=open_repository(edge_settings))
    assert len(published) == 1

    # -- 3. serve: a real bentoml serve, started now so that it boots while batch and edge run ---------------------
    keys = [{"name": "tests", "sha256": hash_key(KEY), "scopes": ["predict", "feedback", "explain"]}]
    env = {
        "FERRY_REGISTRY_URL": registry.url,
        "FERRY_ONLINE_MODEL": name,
        "FERRY_ONLINE_API_KEYS": json.dumps(keys),
        "BENTOML_HOME": str(root / "bentoml-home"),
        # for steps 6 and 7: every answer logged and written within a second; a challenger, once there, answers
        # half the requests (until then the champion answers all)
        "FERRY_ONLINE_PREDICTION_SAMPLE_RATE": "1.0",
        "FERRY_ONLINE_LOG_FLUSH_INTERVAL_S": "0.5",
        "FERRY_ONLINE_ROUTING": "canary",
        "FERRY_ONLINE_CHALLENGER_PERCENT": "50",
        "FERRY_ONLINE_POLL_INTERVAL_S": "0.5",
    }
    service = Service(log=root / "serve.log", env=env)
    pool = ThreadPoolExecutor(max_workers=1)
    starting = pool.submit(service.start)
    pool.shutdown(wait=False)
    try:
        yield from _score_and_sync(out, task_models, service, starting)
    finally:
        starting.cancel()
        service.stop()


def _score_and_sync(
    out: dict[str, Any], task_models: dict[str, Any], service: Service, starting: Future[Service]
) -> Iterator[dict[str, Any]]:
    """Steps 4 and 5 while the service starts, then what it answers (step 3)."""
    name, root, registry, schema = out["name"], out["root"], out["registry"], out["schema"]
    version_id = out["version"]
    frame = pd.read_csv(task_models[name]["data"]).head(ROWS)
    rows = records(frame, schema)
    out["rows"] = rows
    out["truth"] = frame[schema.target].tolist()

    # -- 4. score (ferry score) -----------------------------------------------------------------------------------
    (root / "in").mkdir()
    frame.to_parquet(root / "in" / "rows.parquet", index=False)
    scored = CliRunner().invoke(
        app,
        ["score", "-i", str(root / "in"), "-o", str(root / "out"), "--model", name, "--registry", registry.url],
        env={"COLUMNS": "200"},
    )
    assert scored.exit_code == 0, scored.output
    out["batch"] = batch_scores(root / "out", rows, schema)
    (root / "in-explain").mkdir()
    frame.head(EXPLAINED).to_parquet(root / "in-explain" / "rows.parquet", index=False)
    explained = CliRunner().invoke(
        app,
        ["score", "-i", str(root / "in-explain"), "-o", str(root / "out-explain"), "--model", name,
         "--registry", registry.url, "--explain", "--top-k", "2"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert explained.exit_code == 0, explained.output
    out["explained"] = {"batch": batch_explanations(root / "out-explain", rows[:EXPLAINED], schema)}

    # -- 5. edge: a device synced over HTTP -------------------------------------------------------------------------
    from ferry_edge.agent import Agent

    with StaticHost(root / "repo") as host:
        agent = Agent.init(
            root / "device",
            repo_url=host.url,
            model=name,
            channel="edge/stable",
            trusted_root=(root / "repo" / "metadata" / "1.root.json").read_bytes(),
        )
        assert agent.sync().version == version_id
    out["edge"] = edge_scores(agent.active(), rows, schema)
    out["explained"]["edge"] = agent.active().explain(rows[:EXPLAINED], top_k=2)
    (root / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    predicted = subprocess.run(
        [sys.executable, "-m", "ferry_edge.cli", "--home", str(root / "device"), "predict", str(root / "rows.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert predicted.returncode == 0, predicted.stderr
    out["edge_cli"] = [json.loads(line) for line in predicted.stdout.splitlines()]

    # -- 3. serve (continued): the service, started above, answers the same rows -----------------------------------
    starting.result()  # raises what start raised: the service's log tail names the failure
    out["service"] = service
    out["online"] = online_scores(service, KEY, rows, schema, chunk=150)
    out["explained"]["online"] = online_explanations(service, KEY, rows[:EXPLAINED], top_k=2)
    yield out


def _same(a: Scores, b: Scores) -> None:
    parity = compare(a, b)
    assert parity.identical, parity
    np.testing.assert_array_equal(a.outputs.view(np.uint32), b.outputs.view(np.uint32))


def test_online_batch_and_edge_give_bit_for_bit_the_same_outputs(world: dict[str, Any]) -> None:
    online, schema = world["online"], world["schema"]
    assert len(online.ids) == ROWS
    assert set(online.versions) == {world["version"]}
    _same(online, world["batch"])
    _same(online, world["edge"])
    # The command line prints the same JSON as the service answers (plus the version).
    answers = world["service"].post("/predict", {"records": world["rows"][:50]}, key=KEY)["predictions"]
    assert [{k: v for k, v in line.items() if k != "version"} for line in world["edge_cli"][:50]] == [
        {k: v for k, v in a.items() if k != "prediction_id"} for a in answers
    ]
    columns = output_columns(schema)
    if schema.kind == "regression":
        assert columns == ["value", "lower", "upper"]
        value, lower, upper = online.outputs.T
        assert np.all(lower < value)
        assert np.all(value < upper)
        assert value.std() > 1.0  # not a constant model
        assert {a["coverage"] for a in answers} == {0.9}
    else:
        assert columns == ["none", "scratch", "dent", "crack"]
        assert len(set(online.predictions.tolist())) >= 3  # most classes are predicted
        np.testing.assert_allclose(online.outputs.sum(axis=1), 1.0, atol=1e-5)
        assert {a["prediction"] for a in answers} <= set(columns)


def test_online_batch_and_edge_give_the_same_explanations(world: dict[str, Any]) -> None:
    explained, schema = world["explained"], world["schema"]
    keys = {surface: [explanation_key(e) for e in answers] for surface, answers in explained.items()}
    assert len(keys["online"]) == EXPLAINED
    assert keys["online"] == keys["batch"] == keys["edge"]  # float64 equality: the same bits
    online = world["online"]
    for i, answer in enumerate(explained["online"]):
        total = sum(answer["attributions"].values())
        assert abs(total - (answer["value"] - answer["base_value"])) <= 1e-6
        assert len(answer["top"]) == 2
        if schema.kind == "regression":
            assert answer["class"] is None
            assert answer["value"] == float(online.outputs[i, 0])  # the value every surface answered
        else:
            assert answer["class"] == output_columns(schema)[online.predictions[i]]  # the class predicted
            assert answer["value"] == float(online.outputs[i, online.predictions[i]])
    assert len({k[3] for k in keys["online"]}) == EXPLAINED  # rows are explained differently


def test_feedback_takes_the_truth_of_the_task_and_refuses_the_rest(world: dict[str, Any]) -> None:
    service: Service = world["service"]
    answers = service.post("/predict", {"records": world["rows"][:2]}, key=KEY)["predictions"]
    ids = [a["prediction_id"] for a in answers]
    regression = world["schema"].kind == "regression"
    good = [12.5, 3] if regression else ["dent", "none"]
    bad: list[Any] = ["12.5", -4.0, True] if regression else ["rust", 7, True]
    items = [{"prediction_id": i, "label": g} for i, g in zip(ids, good, strict=True)]
    ack = service.post("/feedback", {"items": items}, key=KEY)
    assert ack == {"stored": 2}
    headers = {"Authorization": f"Bearer {KEY}"}
    for label in bad:
        body = {"items": [{"prediction_id": ids[0], "label": good[0]}, {"prediction_id": ids[1], "label": label}]}
        answer = httpx.post(service.url + "/feedback", json=body, headers=headers, timeout=10)
        assert answer.status_code == 422, (label, answer.text)
        assert "[1].label" in answer.text, answer.text


def _wait(what: str, ready: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.2)


def test_the_monitor_judges_drift_and_quality_of_the_served_answers_and_a_rollout_decides(
    world: dict[str, Any],
) -> None:
    """6. monitor and 7. rollout: a challenger (the champion's model as a new version) serves a canary share; the
    true labels go back through ``/feedback``; the monitor judges prediction drift and each version's quality on
    the task's metrics from the logs the service wrote, and the staged rollout decides on the primary metric."""
    service: Service = world["service"]
    registry: Registry = world["registry"]
    name, schema, champion = world["name"], world["schema"], world["version"]
    challenger = clone_version(registry, registry.get(champion, model=name), world["root"] / "challenger", note="b")
    registry.promote(challenger, "online/challenger", model=name, reason="loop test: a canary")
    answered: dict[str, list[tuple[str, Any]]] = {champion: [], challenger: []}
    rows, truth = world["rows"], world["truth"]
    deadline = time.monotonic() + 120
    start = 0
    while min(len(v) for v in answered.values()) < 60 and time.monotonic() < deadline:
        answer = service.post("/predict", {"records": rows[start : start + 10]}, key=KEY)
        ids = [p["prediction_id"] for p in answer["predictions"]]
        answered[answer["version"]] += list(zip(ids, truth[start : start + 10], strict=True))
        start = (start + 10) % ROWS
    assert min(len(v) for v in answered.values()) >= 60, {v: len(a) for v, a in answered.items()}
    items = [{"prediction_id": pid, "label": label} for pairs in answered.values() for pid, label in pairs]
    assert service.post("/feedback", {"items": items}, key=KEY) == {"stored": len(items)}
    day = datetime.now(UTC) - timedelta(days=1)

    def written(kind: str, version: str | None = None) -> int:
        frame = monitor.online_logs_since(registry, name, kind, day)
        return len(frame) if version is None or frame.empty else int((frame["version"] == version).sum())

    _wait(
        "the challenger's answers in the log", lambda: written("predictions", challenger) >= len(answered[challenger])
    )
    _wait("the champion's answers in the log", lambda: written("predictions", champion) >= len(answered[champion]))
    _wait("the labels in the feedback log", lambda: written("feedback") >= len(items))

    settings = monitor.MonitorSettings(min_rows=100)
    gathered = one_run.gather(registry, name, schema, settings, world["root"] / "monitor")
    (online,) = [s for s in gathered.sources if s.source == "online"]
    judged = one_run.judge_source(registry, name, champion, online, settings, "loop")
    assert judged["drifted_share"] is not None  # input drift judged
    assert judged["prediction_drift"] is not None  # and prediction drift, over the task's answers
    assert judged["versions"][challenger] == len(answered[challenger])
    quality = one_run.quality_of_versions(registry, name, champion, gathered.feedback, None, settings)
    for version, pairs in answered.items():
        q = quality[version]
        assert q["labelled"] >= len(pairs)
        if schema.kind == "regression":
            assert 0 < q["mae"] <= q["rmse"] < 30
            assert q["declared_coverage"] == 0.9
            assert 0.5 < q["coverage"] <= 1
        else:
            assert 0 < q["macro_f1"] <= 1
            assert 0 < q["log_loss"] < 5
    one_run.record(registry, name, champion, gathered, [judged], settings, datetime.now(UTC))
    assert [h["source"] for h in monitor.history(registry, name)] == ["online"]

    # Identical models on different requests: a tolerance of 1 lets the labels decide without chance deciding.
    settings_ = rollout.RolloutSettings(window_hours=0, min_rows=60, min_labels=50, tolerance=1, regression_tolerance=1)
    evidence = rollout.assess(registry, name, settings_)
    assert evidence.decision == "promote", evidence.reasons
    metric = "RMSE" if schema.kind == "regression" else "macro F1"
    assert evidence.reasons[0].startswith(f"{metric} on labelled live traffic")
    assert evidence.prediction_drift is not None
    column = "value" if schema.kind == "regression" else "prediction"
    assert [c["feature"] for c in evidence.prediction_drift["columns"]] == [column]
    (record,) = rollout.apply(registry, evidence)
    assert (record.channel, record.to_version) == ("online/champion", challenger)
