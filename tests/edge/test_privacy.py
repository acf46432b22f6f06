"""Heartbeats carry no input values: no value of any single row, nor of a small batch, appears in a heartbeat; values
outside a categorical feature's declared levels never appear at all, only in one ``other`` count.

Property-based: hypothesis draws rows that fit the churn schema (with free text, e-mail addresses and odd numbers
where the schema lets them in) and checks every heartbeat built from them, through the sketch and through the real
``ferry-edge predict`` and ``ferry-edge heartbeat`` commands.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from edge_support import Setup
from ferry_edge.cli import main as edge_main
from ferry_edge.telemetry import DriftSketch, Heartbeats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.schema import Schema

COUNT_KEYS = frozenset({"count", "missing", "rows", "other"})
MIN_COUNT = 20


@pytest.fixture(scope="module")
def features(churn_champion: dict[str, str]) -> list[dict[str, Any]]:
    """The schema's features as a bundle's manifest carries them."""
    return list(Schema.load(churn_champion["schema"]).to_dict()["features"])


FREE_TEXT = st.one_of(
    st.emails(),
    st.text(min_size=1, max_size=30),
    st.from_regex(r"[A-Za-z][A-Za-z0-9 .@+-]{2,40}", fullmatch=True),
)


def value_of(f: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values of feature ``f`` that its schema accepts."""
    if f["type"] == "numeric":
        lo = float(f["min"]) if f.get("min") is not None else -1e6
        hi = float(f["max"]) if f.get("max") is not None else 1e6
        values: st.SearchStrategy[Any] = st.one_of(
            st.floats(lo, hi, allow_nan=False, allow_infinity=False), st.integers(math.ceil(lo), math.floor(hi))
        )
    else:
        levels = list(f.get("levels") or [])
        known = [st.sampled_from(levels)] if levels else []
        unknown = [FREE_TEXT] if f.get("allow_unknown", True) or not levels else []
        values = st.one_of(*known, *unknown)
    return st.one_of(values, st.none()) if f.get("nullable", True) else values


def rows_of(
    features: Sequence[Mapping[str, Any]], min_size: int, max_size: int
) -> st.SearchStrategy[list[dict[str, Any]]]:
    row = st.fixed_dictionaries({f["name"]: value_of(f) for f in features})
    return st.lists(row, min_size=min_size, max_size=max_size)


def levels_of(f: Mapping[str, Any]) -> set[str]:
    return set(f.get("levels") or [])


def leaves(obj: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) of a JSON document, keys of objects included as values of their own."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield None, k
            yield from leaves(v, "count" if key == "counts" else k)  # a level's count is a count
    elif isinstance(obj, list):
        for v in obj:
            yield from leaves(v, key)
    else:
        yield key, obj


def strings(beat: Mapping[str, Any]) -> set[str]:
    return {v for _, v in leaves(json.loads(json.dumps(beat))) if isinstance(v, str)}


def assert_no_row_value(beat: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], features: Sequence[Any]) -> None:
    """No value of these rows appears in the heartbeat: no string (as a key or a value) and no number other than
    a count (a count may equal a value by chance; it says how many, not what). Strings every heartbeat holds (its
    keys, feature names, the device's name) say nothing about the rows and are set aside."""
    skeleton = {**beat, "sketch": DriftSketch(features).to_dict()}
    vocabulary, skeleton_text = strings(skeleton), json.dumps(skeleton, ensure_ascii=False)
    found = strings(beat) - vocabulary
    numbers = {
        float(v)
        for k, v in leaves(json.loads(json.dumps(beat)))
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in COUNT_KEYS
    }
    text = json.dumps(beat, ensure_ascii=False)
    for i, row in enumerate(rows):
        for name, v in row.items():
            if isinstance(v, str):
                assert v not in found, f"row {i} {name}={v!r} is in the heartbeat"
                if len(v) >= 6 and v not in skeleton_text:
                    assert v not in text, f"row {i} {name}={v!r} is in the heartbeat's text"
            elif isinstance(v, int | float):
                assert float(v) not in numbers, f"row {i} {name}={v!r} is in the heartbeat"


def build(features: list[dict[str, Any]], rows: list[dict[str, Any]], home: Path) -> dict[str, Any]:
    sketch = DriftSketch(features, min_count=MIN_COUNT)
    sketch.update(rows)
    status = {"device": "d", "model": "churn", "channel": "edge/stable", "active_version": "v", "stale": False}
    return Heartbeats(home, str(home / "out")).build(status, sketch)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_value_of_a_single_row_or_a_small_batch_is_in_a_heartbeat(
    data: st.DataObject, features: list[dict[str, Any]], tmp_path: Path
) -> None:
    rows = data.draw(rows_of(features, 1, MIN_COUNT - 1))
    beat = build(features, rows, tmp_path)
    assert_no_row_value(beat, rows, features)
    sketch = beat["sketch"]
    assert sketch["rows"] == len(rows)
    for name, part in sketch["numeric"].items():  # counts are all there is
        assert part["quantiles"] == {}
        assert part["count"] + part["missing"] == len(rows), name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_values_outside_the_declared_levels_never_leave_the_device(
    data: st.DataObject, features: list[dict[str, Any]], tmp_path: Path
) -> None:
    rows = data.draw(rows_of(features, MIN_COUNT, 3 * MIN_COUNT))
    beat = build(features, rows, tmp_path)
    for f in features:
        values = [r[f["name"]] for r in rows if r[f["name"]] is not None]
        summarised = len(values) >= MIN_COUNT  # a feature with many missing values may still be below
        if f["type"] == "numeric":
            quantiles = beat["sketch"]["numeric"][f["name"]]["quantiles"]
            assert set(quantiles) == ({"p5", "p25", "p50", "p75", "p95"} if summarised else set())
            continue
        levels = levels_of(f)
        part = beat["sketch"]["categorical"][f["name"]]
        assert part["count"] == len(values)
        assert set(part["counts"]) <= levels
        if summarised:
            assert part["other"] == sum(v not in levels for v in values)
            assert sum(part["counts"].values()) + part["other"] == len(values)
        else:
            assert (part["counts"], part["other"]) == ({}, 0)
    categorical = [f for f in features if f["type"] != "numeric"]
    outside = [r[f["name"]] for f in categorical for r in rows if r[f["name"]] not in (None, *levels_of(f))]
    assert_no_row_value(beat, [{"value": v} for v in outside], features)


@pytest.fixture
def synced(tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]) -> Setup:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    return setup


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_real_commands_send_no_row_value(data: st.DataObject, synced: Setup) -> None:
    """``ferry-edge predict`` on a single row or a small batch, then ``ferry-edge heartbeat``, as on a device (each
    heartbeat starts the next sketch afresh)."""
    features = synced.agent.active().features
    rows = data.draw(rows_of(features, 1, MIN_COUNT - 1))
    home = str(synced.agent.home)
    work = Path(tempfile.mkdtemp(dir=synced.root))
    (work / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert edge_main(["--home", home, "predict", str(work / "rows.jsonl")]) == 0
    assert edge_main(["--home", home, "heartbeat", "--collector", str(work / "collected")]) == 0
    [beat] = [json.loads(p.read_text()) for p in (work / "collected").glob("*.json")]
    assert beat["sketch"]["rows"] == len(rows)
    assert_no_row_value(beat, rows, features)


def test_a_heartbeat_an_older_agent_queued_goes_out_without_its_values(tmp_path: Path) -> None:
    """Heartbeats wait on disk across an upgrade; the ones an older agent queued are held to the same rules."""
    home, out = tmp_path / "home", tmp_path / "out"
    (home / "heartbeats").mkdir(parents=True)
    older = {
        "id": "0" * 32,
        "device": "d",
        "health": {"ok": True},
        "sent_at": "2026-01-01T00:00:00+00:00",
        "sketch": {
            "rows": 1,
            "numeric": {"age": {"count": 1, "missing": 0, "quantiles": {"p5": 42.5, "p50": 42.5, "p95": 42.5}}},
            "categorical": {"device_os": {"missing": 0, "counts": {"someone@example.com": 1}, "other": 0}},
        },
    }
    (home / "heartbeats" / "20260101T000000000000-abcdef.json").write_text(json.dumps(older))
    beats = Heartbeats(home, str(out))
    assert beats.send(beats.build({"device": "d"}, None))
    delivered = json.loads((out / f"{'0' * 32}.json").read_text())
    assert_no_row_value(delivered, [{"age": 42.5, "device_os": "someone@example.com"}], [])
    assert delivered["sketch"]["numeric"]["age"]["count"] == 1  # the counts still go out
