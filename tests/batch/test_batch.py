"""Batch scoring core: partitions, bit-identical scores, rejects, corrupt partitions, version choice, resumption."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batch_support import read_scores, second_version, source_table, without_time, write_partitions

from ferry import batch
from ferry.batch import discover_partitions
from ferry.data import read_table, to_onnx_inputs, validate
from ferry.errors import DataFormatError, DataValidationError, RegistryError
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer


@pytest.fixture(autouse=True)
def _no_drift_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about partitions and scores; the drift check beside them has its own tests
    (test_batch_drift*.py), and its process imports Evidently for each run."""
    monkeypatch.setenv("FERRY_BATCH_DRIFT", "false")


def reference_scores(champion: dict[str, str], path: Path | str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The whole file through read_table -> validate -> to_onnx_inputs -> OnnxScorer (the online/edge path)."""
    registry = Registry(champion["registry"])
    v = registry.get(champion["version"])
    schema = Schema.from_dict(json.loads(registry.read_bytes(v, "schema.json")))
    frame = validate(read_table(path), schema, require_target=False)
    scores = OnnxScorer(registry.read_bytes(v, "model.onnx")).score(to_onnx_inputs(frame, schema))
    return frame, scores.labels, scores.probabilities


@pytest.fixture
def registry(writable_champion: dict[str, str]) -> Registry:
    return Registry(writable_champion["registry"])


# -------------------------------------------------------------------------------------------------- partitions


def test_discovers_files_directories_and_globs(tmp_path: Path, writable_champion: dict[str, str]) -> None:
    write_partitions(writable_champion, tmp_path / "in", n=2, csv=1)
    (tmp_path / "in" / "_SUCCESS").write_text("")
    (tmp_path / "in" / "notes.txt").write_text("not data")
    parts = discover_partitions(str(tmp_path / "in"))
    assert [(p.key, p.format) for p in parts] == [
        ("day=00__part", "parquet"),
        ("day=01__part", "parquet"),
        ("day=02__part", "csv"),
    ]
    assert [p.key for p in discover_partitions(str(tmp_path / "in" / "day=0*" / "*.parquet"))] == [
        "day=00__part",
        "day=01__part",
    ]
    single = discover_partitions(str(tmp_path / "in" / "day=02" / "part.csv"))
    assert [(p.key, p.format) for p in single] == [("part", "csv")]
    with pytest.raises(DataFormatError, match="not found"):
        discover_partitions(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no CSV or Parquet"):
        discover_partitions(str(tmp_path / "empty"))
    with pytest.raises(DataFormatError, match="matches no files"):
        discover_partitions(str(tmp_path / "in" / "*.pq"))


def test_discovers_fsspec_urls(tmp_path: Path, writable_champion: dict[str, str]) -> None:
    write_partitions(writable_champion, tmp_path / "in", n=2, csv=0)
    parts = discover_partitions(f"file://{tmp_path / 'in'}")
    assert [p.key for p in parts] == ["day=00__part", "day=01__part"]
    assert all(p.url.startswith("file://") for p in parts)


# -------------------------------------------------------------------------------------------------- scoring


def test_scores_match_onnx_scorer_bit_for_bit(
    tmp_path: Path, writable_champion: dict[str, str], registry: Registry
) -> None:
    paths = write_partitions(writable_champion, tmp_path / "in", n=3, csv=1)
    summary = batch.score(
        str(tmp_path / "in"), str(tmp_path / "out"), registry, settings=batch.BatchSettings(batch_rows=700)
    )
    assert (summary.partitions, summary.skipped, summary.rejected) == (4, 0, 0)
    assert summary.rows == summary.scored == 6000
    for path, key in zip(paths, ["day=00__part", "day=01__part", "day=02__part", "day=03__part"], strict=True):
        frame, labels, probs = reference_scores(writable_champion, path)
        got = pq.read_table(tmp_path / "out" / "scores" / f"{key}.parquet")
        assert got.column_names == ["customer_id", "prediction", "prob_0", "prob_1", "model_version", "scored_at"]
        assert got.column("customer_id").to_pylist() == frame["customer_id"].tolist()
        np.testing.assert_array_equal(got.column("prediction").to_numpy(), labels)
        assert got.column("prob_0").type == pa.float32()
        # bit-identical, not merely close
        assert got.column("prob_0").to_numpy().tobytes() == probs[:, 0].tobytes()
        assert got.column("prob_1").to_numpy().tobytes() == probs[:, 1].tobytes()
        assert set(got.column("model_version").to_pylist()) == {writable_champion["version"]}
    manifest = sorted((tmp_path / "out" / "_manifest").iterdir())
    assert len(manifest) == 4
    assert list((tmp_path / "out" / "_tmp").iterdir()) == []
    assert not (tmp_path / "out" / "rejects").exists() or list((tmp_path / "out" / "rejects").iterdir()) == []


def test_rerun_skips_finished_partitions(tmp_path: Path, writable_champion: dict[str, str], registry: Registry) -> None:
    write_partitions(writable_champion, tmp_path / "in", n=2, csv=0)
    first = batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "scores").iterdir()}
    again = batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry)
    assert (again.skipped, again.rows, again.scored) == (2, first.rows, first.scored)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "scores").iterdir()} == before
    assert len(read_scores(tmp_path / "out")) == 6000


# -------------------------------------------------------------------------------------------------- rejects


def _bad_rows(writable_champion: dict[str, str]) -> pd.DataFrame:
    df = source_table(writable_champion).slice(0, 40).to_pandas()
    df["tenure_months"] = df["tenure_months"].astype(object)
    df.loc[3, "tenure_months"] = "twelve"  # wrong type
    df.loc[5, "plan"] = "platinum"  # unknown category, schema forbids it
    df.loc[7, "tenure_months"] = -5.0  # outside the range
    df.loc[9, "contract"] = None  # missing, not nullable
    df.loc[11, "region"] = "mars"  # unknown but allowed (no levels)
    df.loc[13, "device_os"] = "windows"  # unknown but allow_unknown: true
    return df


def test_bad_rows_go_to_rejects_with_id_and_reason(
    tmp_path: Path, writable_champion: dict[str, str], registry: Registry
) -> None:
    df = _bad_rows(writable_champion)
    (tmp_path / "in").mkdir()
    df.to_csv(tmp_path / "in" / "a.csv", index=False)
    table = pa.Table.from_pandas(df.astype({"tenure_months": str}), preserve_index=False)
    pq.write_table(table, tmp_path / "in" / "b.parquet")
    missing = source_table(writable_champion).slice(100, 10).drop_columns(["plan"])
    pq.write_table(missing, tmp_path / "in" / "c.parquet")

    summary = batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry)
    assert (summary.rows, summary.rejected, summary.scored) == (90, 4 + 4 + 10, 90 - 18)
    for key in ("a", "b"):
        rejects = pq.read_table(tmp_path / "out" / "rejects" / f"{key}.parquet").to_pandas()
        ids = df["customer_id"]
        assert rejects[["row", "id", "column", "rule"]].values.tolist() == [
            [3, ids[3], "tenure_months", "numeric_type"],
            [5, ids[5], "plan", "levels"],
            [7, ids[7], "tenure_months", "range"],
            [9, ids[9], "contract", "not_null"],
        ]
        assert "not one of the declared levels (basic, standard, premium)" in rejects["reason"][1]
        scored = pq.read_table(tmp_path / "out" / "scores" / f"{key}.parquet").to_pandas()
        assert len(scored) == 36
        assert {ids[11], ids[13]} <= set(scored["customer_id"])  # allowed unknowns are scored
        assert not set(rejects["id"]) & set(scored["customer_id"])  # never both, never dropped
    rejects_c = pq.read_table(tmp_path / "out" / "rejects" / "c.parquet").to_pandas()
    assert len(rejects_c) == 10
    assert set(rejects_c["column"]) == {"plan"}
    assert set(rejects_c["rule"]) == {"required"}
    assert pq.read_table(tmp_path / "out" / "scores" / "c.parquet").num_rows == 0

    # the good rows score exactly as the shared path scores them
    good = df.drop(index=[3, 5, 7, 9]).astype({"tenure_months": float})
    good.to_parquet(tmp_path / "good.parquet")
    _, labels, probs = reference_scores(writable_champion, tmp_path / "good.parquet")
    got = pq.read_table(tmp_path / "out" / "scores" / "a.parquet")
    assert got.column("prob_1").to_numpy().tobytes() == probs[:, 1].tobytes()
    np.testing.assert_array_equal(got.column("prediction").to_numpy(), labels)


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("tenure_months", "x", "numeric_type"),
        ("tenure_months", float("inf"), "finite"),
        ("tenure_months", None, "not_null"),
        ("age", 7.0, "range"),
        ("plan", "platinum", "levels"),
        ("contract", None, "not_null"),
        ("signup_at", "not a date", "timestamp_type"),
        ("signup_at", None, "not_null"),
    ],
)
def test_row_problems_agree_with_validate(
    writable_champion: dict[str, str], column: str, value: Any, rule: str
) -> None:
    registry = Registry(writable_champion["registry"])
    v = registry.get(writable_champion["version"])
    schema = Schema.from_dict(json.loads(registry.read_bytes(v, "schema.json")))
    df = read_table(writable_champion["data"]).head(5).astype({column: object})
    df.loc[2, column] = value
    with pytest.raises(DataValidationError) as caught:
        validate(df, schema, require_target=False)
    problems = batch.row_problems(df, schema)
    assert [(p.column, p.rule) for p in problems] == [(caught.value.column, caught.value.rule)] == [(column, rule)]
    assert np.flatnonzero(problems[0].mask).tolist() == [2]


# -------------------------------------------------------------------------------------------- corrupt partitions


def test_corrupt_partition_fails_clearly_and_the_others_score(
    tmp_path: Path, writable_champion: dict[str, str], registry: Registry
) -> None:
    paths = write_partitions(writable_champion, tmp_path / "in", n=3, csv=0)
    good_bytes = paths[1].read_bytes()
    paths[1].write_bytes(good_bytes[: len(good_bytes) // 2])  # truncated
    (tmp_path / "in" / "day=09").mkdir()
    (tmp_path / "in" / "day=09" / "part.parquet").write_bytes(b"PAR1 this is not parquet at all")

    with pytest.raises(batch.PartitionsFailed) as caught:
        batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry)
    assert set(caught.value.failures) == {"day=01__part", "day=09__part"}
    assert "corrupt or truncated" in caught.value.failures["day=01__part"]
    assert str(paths[1]) in caught.value.failures["day=01__part"]
    summary = caught.value.summary
    assert summary is not None
    assert summary.scored == 4000
    assert sorted(p.name for p in (tmp_path / "out" / "scores").iterdir()) == [
        "day=00__part.parquet",
        "day=02__part.parquet",
    ]
    assert list((tmp_path / "out" / "_tmp").iterdir()) == []

    # repair the input and rerun: only the failed partitions are scored now
    paths[1].write_bytes(good_bytes)
    shutil.rmtree(tmp_path / "in" / "day=09")
    again = batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry)
    assert (again.skipped, again.scored) == (2, 6000)
    assert without_time(read_scores(tmp_path / "out"))["customer_id"].is_unique


# -------------------------------------------------------------------------------------------- version choice


def test_version_batch_channel_then_champion_then_pinned(tmp_path: Path, writable_champion: dict[str, str]) -> None:
    shutil.copytree(writable_champion["registry"], tmp_path / "registry")
    registry = Registry(str(tmp_path / "registry"))
    first = writable_champion["version"]
    assert batch.resolve_version(registry).id == first  # no batch channel: online/champion
    second = second_version(registry, first, tmp_path)
    registry.promote(second, "batch", reason="test batch channel")
    assert batch.resolve_version(registry).id == second
    assert batch.resolve_version(registry, version=first[:8]).id == first
    settings = batch.BatchSettings(channel="batch-nightly", fallback_channel="edge/stable")
    with pytest.raises(RegistryError, match="no version on channel 'batch-nightly' nor on 'edge/stable'"):
        batch.resolve_version(registry, settings=settings)
    with pytest.raises(RegistryError, match="holds no models"):
        batch.resolve_version(Registry(str(tmp_path / "empty")))

    write_partitions(writable_champion, tmp_path / "in", n=1, csv=0)
    batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry)
    assert set(read_scores(tmp_path / "out")["model_version"]) == {second}
    with pytest.raises(RegistryError, match=f"already holds partitions scored by version\\(s\\) {second}"):
        batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry, version=first)


# -------------------------------------------------------------------------------------------------- prefetch


def test_prefetch_keeps_order_raises_in_order_and_stops_when_closed() -> None:
    import threading

    from ferry.batch import prefetch

    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise DataFormatError("partition x: broken at batch 3")

    gen_failing = prefetch(failing())
    assert [next(gen_failing), next(gen_failing)] == [1, 2]
    with pytest.raises(DataFormatError, match="broken at batch 3"):
        next(gen_failing)

    produced: list[int] = []
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    gen = prefetch(endless(), depth=2)
    assert next(gen) == 0
    gen.close()
    assert closed.is_set()
    assert len(produced) <= 5  # bounded read-ahead, not the whole input


def test_threaded_and_plain_reading_give_the_same_output(
    tmp_path: Path, writable_champion: dict[str, str], registry: Registry
) -> None:
    write_partitions(writable_champion, tmp_path / "in", n=1, csv=1)
    for name, threaded in (("plain", False), ("threaded", True)):
        settings = batch.BatchSettings(batch_rows=500, prefetch=threaded)
        batch.score(str(tmp_path / "in"), str(tmp_path / name), registry, settings=settings)
    pd.testing.assert_frame_equal(
        without_time(read_scores(tmp_path / "plain")), without_time(read_scores(tmp_path / "threaded"))
    )


def test_reads_and_writes_fsspec_urls(tmp_path: Path, writable_champion: dict[str, str], registry: Registry) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    paths = write_partitions(writable_champion, tmp_path / "in", n=1, csv=1)
    for path in paths:
        fs.pipe(f"/batch-test/in/{path.parent.name}/{path.name}", path.read_bytes())
    try:
        summary = batch.score("memory://batch-test/in", "memory://batch-test/out", registry)
        assert (summary.partitions, summary.scored) == (2, 6000)
        output = summary.results[0]["output"]  # fsspec spells memory URLs memory:///path
        assert output.startswith("memory://")
        assert output.endswith("/batch-test/out/scores/day=00__part.parquet")
        with fs.open("/batch-test/out/scores/day=01__part.parquet", "rb") as fh:
            got = pq.read_table(fh)
        _, labels, probs = reference_scores(writable_champion, paths[1])
        assert got.column("prob_1").to_numpy().tobytes() == probs[:, 1].tobytes()
        np.testing.assert_array_equal(got.column("prediction").to_numpy(), labels)
        assert batch.score("memory://batch-test/in", "memory://batch-test/out", registry).skipped == 2
    finally:
        fs.rm("/batch-test", recursive=True)


def test_write_behind_keeps_order_and_reraises_a_failed_write() -> None:
    import threading

    from ferry.batch import WriteBehind

    for threaded in (True, False):
        seen: list[int] = []
        writes = WriteBehind(depth=2, threaded=threaded)
        for i in range(100):
            writes.submit(seen.append, i)
        writes.drain()
        writes.close()
        assert seen == list(range(100))

    def fail(_: int) -> None:
        raise OSError("disk full")

    main = threading.get_ident()
    where: list[int] = []
    writes = WriteBehind(depth=1)
    writes.submit(lambda _: where.append(threading.get_ident()), 0)
    writes.submit(fail, 1)
    with pytest.raises(OSError, match="disk full"):
        writes.submit(seen.append, 2)  # depth 1: the next submit waits for the failed write and re-raises
    writes.close()
    assert len(where) == 1
    assert where[0] != main  # the write ran in the background thread


def test_row_progress_reports_rows_share_and_rate(
    tmp_path: Path, writable_champion: dict[str, str], registry: Registry
) -> None:
    lines: list[str] = []
    progress = batch.RowProgress(lines.append, "day=00__part", 6000, every_s=0.0)
    write_partitions(writable_champion, tmp_path / "in", n=1, csv=0)
    part = discover_partitions(str(tmp_path / "in"))[0]
    from ferry.batch import count_rows

    assert count_rows(part) == 6000
    batch.score(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        registry,
        settings=batch.BatchSettings(batch_rows=500),
        on_rows=progress,
    )
    assert len(lines) == 12  # one per record batch when every_s is 0
    assert lines[0].startswith("day=00__part: 500 of 6,000 rows (8%), ")
    assert lines[-1].startswith("day=00__part: 6,000 of 6,000 rows (100%), ")
    assert lines[0].endswith(" rows/s")
    quiet: list[str] = []
    slow = batch.RowProgress(quiet.append, "x", None, every_s=3600)
    for _ in range(10):
        slow(100)
    assert quiet == []
    assert slow.rows == 1000
