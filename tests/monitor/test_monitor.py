"""The monitor's core: sources read past their cursors, Evidently drift per source and edge cohort, model quality
from labels, and the alert policy (thresholds, dedupe, cooldown). Plain functions; the flow is tested elsewhere."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ferry_edge.telemetry import DriftSketch, Heartbeats
from helpers import beats_from, copy_clean, serve_rows

from ferry import gate, monitor
from ferry.cli.parity import records
from ferry.demo_data import churn_schema, make_churn
from ferry.errors import FerryError
from ferry.registry import Registry

SETTINGS = monitor.MonitorSettings(min_rows=100)


@pytest.fixture
def registry(churn_champion: dict[str, str], tmp_path: Path) -> Registry:
    return copy_clean(churn_champion["registry"], tmp_path / "registry")


@pytest.fixture(scope="module")
def reference(churn_champion: dict[str, str]) -> Any:
    registry = Registry(churn_champion["registry"])
    return monitor.reference_of(registry, registry.get(churn_champion["version"]))


def test_online_drift_is_found_once_and_the_cursor_moves_on(registry: Registry, reference: Any, tmp_path: Path) -> None:
    frame, schema = reference
    serve_rows(registry, records(make_churn(600, seed=41), schema))
    calm = monitor.online_since(registry, "churn", None, max_rows=5000)
    assert calm is not None
    assert calm.rows == 600
    calm_judgement = monitor.judge(calm, frame, schema, SETTINGS)
    assert not calm_judgement.drifted, calm_judgement.to_dict()

    serve_rows(registry, records(make_churn(600, seed=42, drift=1.0), schema))
    drifted = monitor.online_since(registry, "churn", calm.cursor, max_rows=5000)
    assert drifted is not None
    assert drifted.rows == 600  # only what came after the cursor
    j = monitor.judge(drifted, frame, schema, SETTINGS, report_dir=tmp_path / "reports", run="r1")
    assert j.drifted
    assert j.input is not None
    assert {"device_os", "support_calls"} <= set(j.input.drifted_features)
    assert j.prediction is not None
    assert j.prediction.drifted  # the champion's scores moved too
    assert j.report is not None
    assert Path(j.report).stat().st_size > 10_000
    assert j.versions == {registry.channel("churn", "online/champion"): 600}
    assert monitor.online_since(registry, "churn", drifted.cursor, max_rows=5000) is None


def test_quality_comes_from_labels_joined_by_prediction_id_even_when_they_come_late(
    registry: Registry, reference: Any, tmp_path: Path
) -> None:
    _, schema = reference
    ids = serve_rows(registry, records(make_churn(400, seed=43), schema), labels=True)
    labels, cursor = monitor.feedback_since(registry, "churn", None)
    assert labels is not None
    assert cursor is not None
    assert set(labels["prediction_id"]) == set(ids)
    assert monitor.feedback_since(registry, "churn", cursor) == (None, cursor)
    logged = monitor.logged_since(registry, "churn", days=1)
    champion = registry.channel("churn", "online/champion")
    quality = monitor.quality_by_version(logged, labels, schema)
    assert set(quality) == {champion}
    assert quality[champion]["labelled"] == 400
    assert quality[champion]["accuracy"] == 1.0  # the labels sent back were the predictions themselves

    # A labels file (CSV) arriving later: the first half of the predictions, with the opposite label.
    answers = logged.head(200)
    flipped = {"0": "1", "1": "0"}
    late = tmp_path / "labels.csv"
    answers.assign(label=answers["prediction"].astype(str).map(flipped))[["prediction_id", "label"]].to_csv(late)
    wrong = monitor.quality_by_version(logged, monitor.read_labels(str(late), schema), schema)
    assert wrong[champion]["labelled"] == 200
    assert wrong[champion]["accuracy"] == 0.0


def test_a_labels_file_without_its_columns_is_named(tmp_path: Path) -> None:
    from ferry.errors import DataError

    bad = tmp_path / "labels.csv"
    bad.write_text("id,truth\n1,0\n")
    with pytest.raises(DataError, match=r"no column\(s\) \['prediction_id', 'label'\]"):
        monitor.read_labels(str(bad))


def test_too_few_rows_are_not_judged(registry: Registry, reference: Any) -> None:
    frame, schema = reference
    serve_rows(registry, records(make_churn(50, seed=44, drift=1.0), schema))
    data = monitor.online_since(registry, "churn", None, max_rows=5000)
    assert data is not None
    j = monitor.judge(data, frame, schema, SETTINGS)
    assert not j.drifted
    assert j.skipped == "50 new rows, fewer than min_rows=100"


def test_the_reference_is_sketched_exactly_as_a_device_sketches_its_inputs() -> None:
    """monitor.reference_sketch and ferry_edge's DriftSketch must agree, or every edge cohort would look drifted."""
    schema = churn_schema()
    frame = make_churn(600, seed=45, drift=0.3)  # fewer rows than a device's sample, with missing values
    assert frame[[f.name for f in schema.features]].isna().any().any()
    device = DriftSketch(schema.to_dict()["features"], top_k=50)
    device.update(records(frame, schema))
    assert monitor.reference_sketch(frame, schema, top_k=50) == device.to_dict()


def test_edge_cohorts_are_judged_from_sketches_alone(registry: Registry, reference: Any, tmp_path: Path) -> None:
    frame, schema = reference
    folder = tmp_path / "collector"
    beats_from(tmp_path, "calm", [make_churn(300, seed=50 + i) for i in range(2)], "edge/stable", folder)
    beats_from(tmp_path, "hot", [make_churn(300, seed=60 + i, drift=1.0) for i in range(2)], "edge/beta", folder)
    sources, latest, cursor = monitor.edge_since(registry, "churn", schema, None, folder=str(folder))
    assert cursor is not None
    assert sorted(b["device"] for b in latest) == ["calm-0", "calm-1", "hot-0", "hot-1"]
    by = {s.source: s for s in sources}
    assert set(by) == {"edge:edge/stable", "edge:edge/beta"}
    assert by["edge:edge/beta"].rows == 600
    assert not monitor.judge(by["edge:edge/stable"], frame, schema, SETTINGS).drifted
    hot = monitor.judge(by["edge:edge/beta"], frame, schema, SETTINGS)
    assert hot.drifted
    assert hot.input is not None
    assert "device_os" in hot.input.drifted_features
    # Heartbeats carry no rows: nothing but counts, quantiles and category counts left the devices.
    raw = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert all(set(b["sketch"]) == {"rows", "numeric", "categorical"} for b in raw)
    assert monitor.edge_since(registry, "churn", schema, cursor, folder=str(folder))[0] == []


def test_heartbeats_the_online_service_received_are_read_once(
    registry: Registry, reference: Any, tmp_path: Path
) -> None:
    from ferry.online.telemetry import Collector, TelemetryLog

    frame, schema = reference
    features = schema.to_dict()["features"]
    log = TelemetryLog(registry.url, "churn", buffer_rows=100)
    collector = Collector(log, "churn")
    for i in range(2):
        sketch = DriftSketch(features)
        sketch.update(records(make_churn(300, seed=90 + i, drift=1.0), schema))
        beats = Heartbeats(tmp_path / f"dev-{i}", "unused")
        status = {"device": f"dev-{i}", "model": "churn", "channel": "edge/beta", "active_version": "v2"}
        payload = json.loads(json.dumps(beats.build(status, sketch)))
        collector.accept(payload)
        collector.accept(payload)  # resent: the agent did not see the answer
    log.flush()
    sources, latest, cursor = monitor.edge_since(registry, "churn", schema, None)
    assert [s.source for s in sources] == ["edge:edge/beta"]
    assert sources[0].rows == 600  # each heartbeat once
    assert sources[0].versions == {"v2": 600}
    assert sorted(b["device"] for b in latest) == ["dev-0", "dev-1"]
    judged = monitor.judge(sources[0], frame, schema, SETTINGS)
    assert judged.input is not None
    assert {"device_os", "support_calls"} <= set(judged.input.drifted_features)
    assert monitor.edge_since(registry, "churn", schema, cursor)[0] == []


def test_batch_inputs_are_read_past_the_cursor(registry: Registry, reference: Any) -> None:
    frame, schema = reference
    sample = make_churn(300, seed=70, drift=1.0)[list(schema.feature_names)].assign(p_positive=0.5)
    monitor.record_batch_input(registry, "churn", sample, version="v1", run="r1")
    data = monitor.batch_since(registry, "churn", None, max_rows=1000)
    assert data is not None
    assert data.rows == 300
    assert data.versions == {"v1": 300}
    assert monitor.judge(data, frame, schema, SETTINGS).drifted
    assert monitor.batch_since(registry, "churn", data.cursor, max_rows=1000) is None


# ------------------------------------------------------------------------------------------------ the policy


def judgement(source: str, features: tuple[str, ...]) -> monitor.Judgement:
    columns = tuple(gate.ColumnDrift(f, "m", 0.5, 0.1, True) for f in features)
    drift = gate.DriftResult(bool(features), 0.5 if features else 0.0, 0.3, columns, 1000, 1000)
    return monitor.Judgement(source, 1000, {}, drift, None, None)


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_new_drift_asks_for_one_retrain_even_when_several_sources_drift() -> None:
    state = monitor.MonitorState()
    policy = monitor.Policy(monitor.MonitorSettings(cooldown_hours=24, renotify_hours=72))
    out = policy.decide(state, [judgement("online", ("a",)), judgement("batch", ("b",))], T0)
    assert [(a.source, a.announce, a.retrain) for a in out] == [("online", True, True), ("batch", True, False)]
    assert state.last_retrain_request == T0.isoformat(timespec="seconds")


def test_the_same_drift_is_not_announced_again_until_renotify() -> None:
    state = monitor.MonitorState()
    policy = monitor.Policy(monitor.MonitorSettings(cooldown_hours=24, renotify_hours=72))
    policy.decide(state, [judgement("online", ("a", "b"))], T0)
    again = policy.decide(state, [judgement("online", ("b", "a"))], T0 + timedelta(hours=5))
    assert [(a.announce, a.retrain) for a in again] == [(False, False)]
    assert "same drift" in again[0].why
    part = policy.decide(state, [judgement("online", ("b",))], T0 + timedelta(hours=6))  # sampling noise
    assert [(a.announce, a.retrain) for a in part] == [(False, False)]
    later = policy.decide(state, [judgement("online", ("a", "b"))], T0 + timedelta(hours=73))
    assert [(a.announce, a.retrain) for a in later] == [(True, True)]


def test_a_cooldown_stops_a_retrain_storm_but_new_drift_is_still_announced() -> None:
    state = monitor.MonitorState()
    policy = monitor.Policy(monitor.MonitorSettings(cooldown_hours=24, renotify_hours=72))
    policy.decide(state, [judgement("online", ("a",))], T0)
    storm = policy.decide(state, [judgement("online", ("a", "c"))], T0 + timedelta(hours=2))
    assert [(a.announce, a.retrain) for a in storm] == [(True, False)]
    assert "cooldown 24 h" in storm[0].why
    after = policy.decide(state, [judgement("online", ("a", "c", "d"))], T0 + timedelta(hours=25))
    assert [(a.announce, a.retrain, a.why) for a in after] == [(True, True, "new drift: d")]


def test_drift_that_went_away_is_news_when_it_comes_back() -> None:
    state = monitor.MonitorState()
    policy = monitor.Policy(monitor.MonitorSettings(cooldown_hours=0, renotify_hours=72))
    policy.decide(state, [judgement("online", ("a",))], T0)
    assert policy.decide(state, [judgement("online", ())], T0 + timedelta(hours=1)) == []
    back = policy.decide(state, [judgement("online", ("a",))], T0 + timedelta(hours=2))
    assert [(a.announce, a.retrain) for a in back] == [(True, True)]


def test_state_and_history_persist_in_the_registry(registry: Registry) -> None:
    state = monitor.MonitorState(
        cursors={"online": "2026-01-01/x.parquet"}, last_retrain_request="2026-01-01T00:00:00+00:00"
    )
    state.save(registry, "churn")
    assert monitor.MonitorState.load(registry, "churn") == state
    monitor.append_history(registry, "churn", [{"source": "online", "drifted": True}])
    monitor.append_history(registry, "churn", [{"source": "batch", "drifted": False}])
    assert [h["source"] for h in monitor.history(registry, "churn")] == ["online", "batch"]


def test_a_corrupt_state_file_is_named(registry: Registry) -> None:
    path = Path(registry.url) / "models" / "churn" / "monitor" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with pytest.raises(FerryError, match="monitor state of 'churn' is not valid JSON"):
        monitor.MonitorState.load(registry, "churn")


@pytest.mark.parametrize(
    ("env", "field"),
    [({"FERRY_MONITOR_DRIFT_SHARE": "1.5"}, "drift_share"), ({"FERRY_MONITOR_MIN_ROWS": "0"}, "min_rows")],
)
def test_bad_settings_name_the_field(env: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError, match=field):
        monitor.MonitorSettings()


def test_a_batch_run_leaves_its_input_sample_for_the_monitor_and_its_output_for_status(
    registry: Registry, reference: Any, tmp_path: Path
) -> None:
    from ferry import batch, status

    frame, schema = reference
    (tmp_path / "in").mkdir()
    make_churn(3000, seed=77, drift=1.0).to_parquet(tmp_path / "in" / "part.parquet", index=False)
    summary = batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry)
    data = monitor.batch_since(registry, "churn", None, max_rows=50_000)
    assert data is not None
    assert data.versions == {summary.version: data.rows}
    assert data.rows == batch.BatchSettings().drift_sample_rows  # the partition's drift sample
    assert {"prediction", "p_positive", "prob_0", "prob_1"} <= set(data.frame.columns)  # the version's answers
    judged = monitor.judge(data, frame, schema, SETTINGS)
    assert judged.drifted
    assert judged.prediction is not None
    (run,) = status.batch_runs(registry, "churn")
    assert run["output"] == summary.output
    assert run["version"] == summary.version
    assert run["scored"] == 3000


def test_a_run_hands_over_files_and_moves_its_cursors_only_when_it_records(
    registry: Registry, reference: Any, tmp_path: Path
) -> None:
    """The plain functions the monitor flow wraps: gather writes each source's rows to a file (the tasks pass its
    path, never rows), judging reads it back, and the cursors move past the judged rows only in ``record``."""
    from datetime import UTC, datetime

    from ferry.monitor import run as one_run

    _, schema = reference
    ids = serve_rows(registry, records(make_churn(600, seed=42, drift=1.0), schema), labels=True)
    champion = registry.channel("churn", "online/champion")
    assert champion is not None
    gathered = one_run.gather(registry, "churn", schema, SETTINGS, tmp_path / "work")
    (online,) = gathered.sources
    assert online.source == "online"
    assert online.rows == 600
    assert Path(online.path).is_file()
    assert online.load().frame.shape[0] == 600
    assert gathered.feedback is not None
    assert Path(gathered.feedback).is_file()
    assert one_run.Gathered.from_dict(gathered.to_dict()) == gathered  # what the flow's tasks hand each other
    again = one_run.gather(registry, "churn", schema, SETTINGS, tmp_path / "again")
    assert [s.rows for s in again.sources] == [600]  # nothing recorded yet: the same rows are still new

    judged = [one_run.judge_source(registry, "churn", champion, s, SETTINGS, "r1") for s in gathered.sources]
    assert judged[0]["drifted"]
    assert judged[0]["report"] is not None
    quality = one_run.quality_of_versions(registry, "churn", champion, gathered.feedback, None, SETTINGS)
    assert quality[champion]["labelled"] == len(ids)
    (announced,) = one_run.record(registry, "churn", champion, gathered, judged, SETTINGS, datetime.now(UTC))
    assert announced.announce
    assert announced.retrain
    assert one_run.gather(registry, "churn", schema, SETTINGS, tmp_path / "after").sources == []
    assert [h["source"] for h in monitor.history(registry, "churn")] == ["online"]
