"""The online logs' promises: a writer never dies on a row, a failed write loses nothing, acknowledged means stored.

Each promise is tested over a class of rows or faults (hypothesis draws the rows), not over one example.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.online.logs import FeedbackLog, Flusher, ParquetLog, to_table

# Text with every code point JSON can carry, lone surrogates drawn often (st.text never draws them).
ANY_TEXT = st.lists(st.characters(exclude_categories=()) | st.characters(categories=["Cs"]), max_size=8).map("".join)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: JSON allows integers that no Parquet column holds
    st.floats(allow_nan=False),
    ANY_TEXT,
)
ROWS = st.lists(
    st.dictionaries(st.sampled_from(["a", "b", "c", "id", "plan", "é"]), SCALARS, max_size=5), min_size=1, max_size=30
)


def parquet_rows(root: Path, prefix: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted((root / prefix).rglob("*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def quarantined_rows(root: Path, prefix: str) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((root / prefix).rglob("*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines())
    return rows


def present(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a row that hold a value (a Parquet row has every column, None where the row had none)."""
    return {k: v for k, v in row.items() if v is not None}


def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    a, b = present(a), present(b)
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, float) and math.isinf(value):
            if value != other:
                return False
        elif value != other or isinstance(value, bool) != isinstance(other, bool):
            return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS)
def test_every_row_is_written_or_quarantined_never_lost(rows: list[dict[str, Any]], tmp_path_factory: Any) -> None:
    """Any rows, of any fields and types, text UTF-8 cannot encode and integers no column holds included: each row
    is in a Parquet file or in the quarantine file, exactly once and unchanged, and the counters say so."""
    root = tmp_path_factory.mktemp("log")
    log = ParquetLog(str(root), "models/m/online/predictions", buffer_rows=10_000)
    log.append(rows)
    log.flush()
    written = parquet_rows(root, "models/m/online/predictions")
    quarantined = quarantined_rows(root, "models/m/online/quarantine/predictions")
    assert log.written == len(written)
    assert log.quarantined == len(quarantined)
    assert log.written + log.quarantined == len(rows)
    assert log.dropped == 0
    assert log.pending == 0
    for entry in quarantined:
        assert entry["reason"]
    good, q = [], 0  # the rows not quarantined, in order (quarantine keeps the order rows came in)
    for row in rows:
        if q < len(quarantined) and json.dumps(row) == json.dumps(quarantined[q]["row"]):
            q += 1
        else:
            good.append(row)
    assert q == len(quarantined)
    assert len(good) == len(written)
    for want, got in zip(good, written, strict=True):
        assert same(want, got), (want, got)


def test_rows_of_different_fields_keep_all_of_theirs(tmp_path: Path) -> None:
    """Arrow infers a table's columns from its first row; a log takes the union, so no row loses a field."""
    log = ParquetLog(str(tmp_path), "p")
    rows = [{"a": 1.0}, {"a": 2.0, "b": "x"}, {"c": True}]
    log.append(rows)
    log.flush()
    assert [present(r) for r in parquet_rows(tmp_path, "p")] == rows


def test_a_row_arrow_cannot_hold_goes_to_quarantine_and_its_neighbours_are_written(tmp_path: Path) -> None:
    table, refused = to_table([{"id": "ok"}, {"id": "\ud800"}, {"id": "fine"}, {"id": 2**80}, {"id": 7}])
    assert table is not None
    assert table.column("id").to_pylist() == ["ok", "fine"]
    assert [row["id"] for row, _ in refused] == ["\ud800", 2**80, 7]
    assert "'id'" in refused[0][1]


def test_a_store_that_refuses_writes_loses_nothing(tmp_path: Path) -> None:
    """Rows whose write failed stay buffered and are written once the store takes writes again."""
    blocker = tmp_path / "registry"
    blocker.write_text("a file where the registry directory should be")  # every write under it fails
    log = ParquetLog(str(blocker), "p", buffer_rows=2)
    log.append([{"n": i} for i in range(5)])
    assert log.flush() is None
    assert log.write_failures >= 1
    assert log.pending == 5
    assert log.last_error is not None
    blocker.unlink()
    log.append([{"n": 5}])
    assert log.flush() is not None
    assert sorted(r["n"] for r in parquet_rows(blocker, "p")) == list(range(6))
    assert log.dropped == 0
    assert log.last_error is None


def test_a_prediction_log_bounds_what_it_keeps_while_the_store_is_down_and_counts_the_rest(tmp_path: Path) -> None:
    blocker = tmp_path / "registry"
    blocker.write_text("")
    log = ParquetLog(str(blocker), "p", buffer_rows=100, max_pending_rows=3)
    log.append([{"n": i} for i in range(5)])
    log.flush()
    assert (log.pending, log.dropped) == (3, 2)
    blocker.unlink()
    log.flush()
    assert [r["n"] for r in parquet_rows(blocker, "p")] == [2, 3, 4]  # the newest rows are the ones kept


class Exploding(ParquetLog):
    def flush(self) -> str | None:
        raise RuntimeError("a flush that raises")


def test_the_flusher_survives_a_log_that_raises_and_says_it_is_alive(tmp_path: Path) -> None:
    good = ParquetLog(str(tmp_path), "good")
    flusher = Flusher([Exploding(str(tmp_path), "bad"), good], interval_s=0.01).start()
    try:
        good.append([{"n": 1}])
        deadline = 200
        while flusher.errors < 3 and deadline:
            deadline -= 1
            flusher._stop.wait(0.01)
        assert flusher.errors >= 3
        assert flusher.alive
        assert good.written == 1  # the log after the raising one is still flushed
        assert "ferry_online_log_writer_alive 1" in flusher.render()
    finally:
        flusher.stop(timeout_s=1)
    assert not flusher.alive
    assert "ferry_online_log_writer_alive 0" in flusher.render()


def test_metrics_count_quarantined_rows_per_log(tmp_path: Path) -> None:
    log = ParquetLog(str(tmp_path), "models/m/online/feedback")
    log.append([{"label": "1"}, {"label": "\udfff"}])
    log.flush()
    text = Flusher([log], interval_s=1).render()
    assert 'ferry_online_log_rows_quarantined_total{log="feedback"} 1' in text
    assert 'ferry_online_log_rows_written_total{log="feedback"} 1' in text


# ------------------------------------------------------------------------------------- acknowledged means stored

WRITER = textwrap.dedent(
    """
    import sys
    from ferry.online.logs import FeedbackLog
    log = FeedbackLog(sys.argv[1], "m", buffer_rows=10_000, wal_dir=sys.argv[2])
    for i in range(int(sys.argv[3])):
        log.record([(f"{i:032x}", "1")])
        print(f"acked {i}", flush=True)   # what the service answers once record() returns
    sys.stdin.read()                        # stay alive, rows only in memory and in the write-ahead file
    """
)


@contextlib.contextmanager
def writer(registry: Path, wal: Path, n: int) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """A process running WRITER, once it has acknowledged ``n`` labels (the lines it printed)."""
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(registry), str(wal), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        yield process, [process.stdout.readline().strip() for _ in range(n)]


def test_acknowledged_rows_survive_kill_9(tmp_path: Path) -> None:
    """A real process acknowledges labels, is killed with SIGKILL, and the next log to start writes every one."""
    registry, wal = tmp_path / "registry", tmp_path / "wal"
    with writer(registry, wal, 50) as (process, acked):
        assert acked[-1] == "acked 49"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert not list(registry.rglob("*.parquet"))  # nothing reached the registry before the kill
    FeedbackLog(str(registry), "m", wal_dir=wal).flush()
    ids = sorted(r["prediction_id"] for r in parquet_rows(registry, "models/m/online/feedback"))
    assert ids == [f"{i:032x}" for i in range(50)]
    assert not list(wal.glob("*.jsonl"))  # replayed segments are gone


def test_a_replay_after_a_crash_between_write_and_delete_adds_no_duplicates(tmp_path: Path) -> None:
    """A crash after the Parquet file is written but before its segment is deleted leaves both: the replay rewrites
    the same file (named after the segment) instead of adding the rows again."""
    registry, wal = tmp_path / "registry", tmp_path / "wal"
    log = FeedbackLog(str(registry), "m", wal_dir=wal)
    log.record([(f"{i:032x}", "0") for i in range(7)])
    (segment,) = wal.glob("*.jsonl")
    kept = tmp_path / "segment.copy"
    shutil.copy(segment, kept)
    log.flush()
    shutil.copy(kept, segment)  # the file system as a crash before the delete would leave it
    FeedbackLog(str(registry), "m", wal_dir=wal).flush()
    ids = [r["prediction_id"] for r in parquet_rows(registry, "models/m/online/feedback")]
    assert sorted(ids) == [f"{i:032x}" for i in range(7)]


def test_a_torn_last_line_was_never_acknowledged_and_is_skipped(tmp_path: Path) -> None:
    registry, wal = tmp_path / "registry", tmp_path / "wal"
    log = FeedbackLog(str(registry), "m", wal_dir=wal)
    log.record([("a" * 32, "1")])
    (segment,) = wal.glob("*.jsonl")
    with segment.open("ab") as f:
        f.write(b'{"prediction_id": "bbbb')  # a crash in the middle of the next append
    log.close()
    FeedbackLog(str(registry), "m", wal_dir=wal).flush()
    assert [r["prediction_id"] for r in parquet_rows(registry, "models/m/online/feedback")] == ["a" * 32]


def test_a_live_writer_s_segment_is_not_taken_by_another_process(tmp_path: Path) -> None:
    registry, wal = tmp_path / "registry", tmp_path / "wal"
    with writer(registry, wal, 3) as (process, _):
        try:
            FeedbackLog(str(registry), "m", wal_dir=wal).flush()
            assert not list(registry.rglob("*.parquet"))  # the writer is alive: its rows are its own to write
            assert len(list(wal.glob("*.jsonl"))) == 1
        finally:
            process.kill()
            process.wait(timeout=10)
