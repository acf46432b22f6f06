"""A fleet's heartbeats are read in bounded batches and summed per cohort as they stream: the answer equals the one
from every heartbeat in one frame, and a monitor run never holds every heartbeat. Plain functions, small fleet."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pandas as pd
import pytest
from ferry_edge.telemetry import DriftSketch, Heartbeats

from ferry import monitor
from ferry.cli.parity import records
from ferry.demo_data import churn_schema, make_churn
from ferry.monitor.cohorts import CohortSketch
from ferry.online.telemetry import Collector, TelemetryLog
from ferry.registry import Registry, layout

CHANNELS = ("edge/stable", "edge/beta", "edge/canary")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, list[dict[str, Any]]]:
    """12 devices on three channels, 15 heartbeats each through the online service's telemetry log (files of 40
    rows), every fifth one resent; returns the registry and every heartbeat as sent."""
    tmp = tmp_path_factory.mktemp("fleet")
    schema = churn_schema()
    features = schema.to_dict()["features"]
    pool = []
    for i in range(6):
        sketch = DriftSketch(features)
        sketch.update(records(make_churn(60, seed=200 + i, drift=0.4 * (i % 3)), schema))
        pool.append(sketch)
    registry = Registry(str(tmp / "registry"))
    log = TelemetryLog(registry.url, "churn", buffer_rows=40)
    collector = Collector(log, "churn")
    sent = []
    for n in range(15 * 12):
        device = n % 12
        status = {
            "device": f"pump-{device:02d}",
            "model": "churn",
            "channel": CHANNELS[device % 3],
            "active_version": f"v{device % 2}",
        }
        beat = json.loads(json.dumps(Heartbeats(tmp / "homes" / str(device), "unused").build(status, pool[n % 6])))
        collector.accept(beat)
        if n % 5 == 0:
            collector.accept(beat)  # resent: the agent missed the answer
        sent.append(beat)
    log.flush()
    return registry, sent


def _in_one_frame(beats: list[dict[str, Any]], schema: Any) -> dict[str, dict[str, Any]]:
    """The cohorts' sketches computed from every heartbeat at once, in one pandas frame."""
    frame = pd.json_normalize(beats).drop_duplicates("id")
    out = {}
    for channel, rows in frame.groupby("channel"):
        numeric, categorical = {}, {}
        for f in schema.features:
            if f.type == "numeric":
                count = rows[f"sketch.numeric.{f.name}.count"]
                quantiles = {
                    q: float((count * rows[f"sketch.numeric.{f.name}.quantiles.{q}"]).sum() / count.sum())
                    for q in ("p5", "p25", "p50", "p75", "p95")
                }
                numeric[f.name] = {
                    "count": int(count.sum()),
                    "missing": int(rows[f"sketch.numeric.{f.name}.missing"].sum()),
                    "quantiles": quantiles,
                }
            else:
                prefix = f"sketch.categorical.{f.name}.counts."
                counts = {c.removeprefix(prefix): int(rows[c].sum()) for c in rows.columns if c.startswith(prefix)}
                categorical[f.name] = {
                    "count": int(rows[f"sketch.categorical.{f.name}.count"].sum()),
                    "missing": int(rows[f"sketch.categorical.{f.name}.missing"].sum()),
                    "counts": dict(sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0]))),
                    "other": int(rows[f"sketch.categorical.{f.name}.other"].sum()),
                }
        out[str(channel)] = {"rows": int(rows["sketch.rows"].sum()), "numeric": numeric, "categorical": categorical}
    return out


def test_streamed_cohorts_equal_the_answer_from_one_frame(fleet: tuple[Registry, list[dict[str, Any]]]) -> None:
    registry, sent = fleet
    schema = churn_schema()
    expected = _in_one_frame(sent, schema)
    sources, latest, cursor = monitor.edge_since(registry, "churn", schema, None, batch_rows=16)
    assert cursor is not None
    assert sorted(s.source for s in sources) == sorted(f"edge:{c}" for c in CHANNELS)
    for source in sources:
        want = expected[source.source.removeprefix("edge:")]
        assert source.rows == want["rows"]  # each heartbeat once, resent ones too
        assert sum(source.versions.values()) == want["rows"]
        pd.testing.assert_frame_equal(source.frame, monitor.sketch_frame([want], schema), check_exact=False)
    assert len(latest) == 12
    assert all("sketch" not in beat for beat in latest)  # a device's latest heartbeat is kept without its sketch
    assert {b["device"]: b["sent_at"] for b in latest}["pump-03"] == max(
        b["sent_at"] for b in sent if b["device"] == "pump-03"
    )

    halves = [CohortSketch(schema), CohortSketch(schema)]  # partial sums from two readers add up the same
    for i, beat in enumerate(b for b in sent if b["channel"] == "edge/beta"):
        halves[i % 2].add(beat["sketch"], beat["version"])
    beta = next(s for s in sources if s.source == "edge:edge/beta")
    merged = halves[0].merge(halves[1]).to_sketch()
    pd.testing.assert_frame_equal(beta.frame, monitor.sketch_frame([merged], schema), check_exact=False)


def test_a_run_holds_one_batch_of_heartbeats_not_all_of_them(fleet: tuple[Registry, list[dict[str, Any]]]) -> None:
    registry, sent = fleet
    schema = churn_schema()
    fs, root = registry.open_store()
    directory = layout.online_dir(root, "churn", "telemetry")
    names = sorted(str(p)[len(directory) + 1 :] for p in fs.find(directory))
    assert len(names) > 3
    sizes = [len(batch) for batch in monitor.heartbeat_batches(fs, directory, names, batch_rows=16)]
    assert max(sizes) <= 16
    assert sum(sizes) == len(sent)  # duplicates dropped while streaming

    def peak(read: Any) -> int:
        read()  # warm: imports and caches are not the heartbeats
        tracemalloc.start()
        try:
            read()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    every = peak(lambda: [b for batch in monitor.heartbeat_batches(fs, directory, names) for b in batch])
    streamed = peak(lambda: monitor.edge_since(registry, "churn", schema, None, batch_rows=16))
    assert streamed < every / 2, (streamed, every)


def test_a_heartbeat_that_withheld_a_feature_leaves_its_distribution_to_the_others() -> None:
    schema = churn_schema()
    features = schema.to_dict()["features"]
    full, few = DriftSketch(features), DriftSketch(features)
    full.update(records(make_churn(80, seed=7), schema))
    few.update(records(make_churn(5, seed=8), schema))  # fewer values than min_count: counts only
    cohort = CohortSketch(schema)
    cohort.add(full.to_dict(), "v1")
    cohort.add(few.to_dict(), "v1")
    merged, alone = cohort.to_sketch(), full.to_dict()
    name = next(f.name for f in schema.features if f.type == "numeric")
    assert merged["numeric"][name]["quantiles"] == pytest.approx(alone["numeric"][name]["quantiles"])
    assert merged["rows"] == 85
    only_few = CohortSketch(schema)
    only_few.add(few.to_dict(), "v1")
    assert only_few.to_sketch()["numeric"][name]["quantiles"] == {}
    assert only_few.to_sketch()["numeric"][name]["count"] == few.to_dict()["numeric"][name]["count"]
