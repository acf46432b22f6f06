"""Prediction, feedback and telemetry logs: buffered rows written as Parquet files into the registry's storage.

Layout under the registry root, read by the monitor flow::

    models/<model>/online/predictions/<date>/<time>-<uuid>.parquet   sampled predictions
    models/<model>/online/feedback/<date>/<time>-<uuid>.parquet      ground-truth labels by prediction id
    models/<model>/online/quarantine/<log>/<date>/<time>-<uuid>.jsonl   rows no Parquet file could hold

A prediction row holds its id, time, version, role (answer or shadow), ``request`` (an id shared by the rows of one
request) and ``latency_ms`` (how long the version took to check and score that request: what the staged rollout
compares between champion and challenger), the id column when the request sent one, the features as sent, and the
answer by task (:func:`~ferry.online.predict.answer_columns`):

| task | answer columns |
|---|---|
| binary | ``prediction`` (the class as text), ``p_positive`` (P of the second class), ``prob_<class>`` for both |
| multiclass | ``prediction`` (the class as text), ``prob_<class>`` per class in target_classes order |
| regression | ``value``, ``lower``, ``upper`` |

A feedback row holds ``prediction_id``, ``label`` (the class as text, or a regressor's value as a float) and ``ts``.
PII fields are never written (they are not features). Each log keeps at most ``buffer_rows`` rows in memory and
writes a file when the buffer is full or :meth:`flush` is called. Files are written atomically (temp name, then rename).

What a log promises:

- **A writer never dies on a row.** A row that no Parquet file can hold (text UTF-8 cannot encode, a value of
  another type than the rest of its column) goes to a quarantine file as JSON with the reason, and is counted; the
  other rows of its buffer are written. Columns are the union of the rows' fields, so rows of versions with other
  features keep all of theirs.
- **A failed write loses nothing.** When the storage refuses a write, the rows go back to the buffer and are
  written by a later flush; a prediction log keeps at most ``max_pending_rows`` of them (then the oldest are dropped
  and counted), a durable log keeps them all.
- **Acknowledged means stored** for the durable logs (feedback, telemetry): :meth:`ParquetLog.append` puts the rows
  in a local write-ahead file and fsyncs it before it returns (:mod:`ferry.online.wal`), so a kill -9 after the
  answer loses nothing: the next service to start writes the orphaned rows to the registry.
- **A stopped writer is visible:** :class:`Flusher` survives any error of a flush, and its thread's liveness and every
  log's counters are in ``/metrics`` (:meth:`Flusher.render`) and in ``/readyz``.

One concept kept whole (about 470 lines): the writer, what it promises (quarantine, requeue, write-ahead files) and
the three logs built on it.
"""

from __future__ import annotations

import io
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ferry import storage
from ferry.online.holder import LoadedModel
from ferry.online.predict import PredictResponse, answer_columns
from ferry.online.wal import Segment, WriteAheadLog
from ferry.registry import layout

__all__ = ["FeedbackLog", "Flusher", "ParquetLog", "PredictionLog", "to_table"]

log = logging.getLogger("ferry.online.logs")

RETRY_S = 5.0
"""After a failed write, appends leave writing to the flusher for this long (requests never wait on a bad store)."""


_EXACT = 2**53
"""Integers up to this size have an exact float: only those may sit in a column of floats."""


def _kind(value: Any) -> str:
    """The column type a value asks for: bool, int, float, str, or other (lists, objects: Arrow infers those)."""
    kind = type(value)
    if kind is bool:
        return "bool"
    if kind is int:
        return "int"
    if kind is float:
        return "float"
    if kind is str:
        return "str"
    return "other"


_ARROW = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string()}


def _column_kind(kinds: Counter[str]) -> str:
    """One type per column: floats take exact integers; otherwise the type most values have (first seen on ties)."""
    if not kinds:
        return "null"
    if set(kinds) == {"int", "float"}:
        return "float"
    numbers = kinds["int"] + kinds["float"]
    best = kinds.most_common(1)[0]
    if numbers > best[1] and kinds["float"]:
        return "float"
    return best[0]


def _fits(value: Any, column: str) -> bool:
    if value is None:
        return True
    own = _kind(value)
    if own == column:
        return True
    return column == "float" and own == "int" and -_EXACT <= value <= _EXACT


def to_table(rows: Sequence[Mapping[str, Any]]) -> tuple[pa.Table | None, list[tuple[Mapping[str, Any], str]]]:
    """The rows as one Arrow table, and the rows it cannot hold, with why (in the order given).

    The columns are the union of the rows' fields, each of one type: bool, int, float (integers that a float holds
    exactly may join it), str, or what Arrow infers for anything else. Arrow would turn ``False`` into ``0.0`` in a
    column of floats, or round a big integer; a log refuses such a row instead of changing its value. A row is also
    refused when it has no fields, or when a value has no Arrow form at all (text UTF-8 cannot encode, an integer
    beyond 64 bits). The table is None when no row is left.
    """
    keys = list(dict.fromkeys(key for row in rows for key in row))
    counts: dict[str, Counter[str]] = {key: Counter() for key in keys}
    for row in rows:
        for key, value in row.items():
            if value is not None:
                counts[key][_kind(value)] += 1
    columns = {key: _column_kind(counts[key]) for key in keys}
    why: dict[int, str] = {}
    for i, row in enumerate(rows):
        if not row:
            why[i] = "the row has no fields"
            continue
        for key, value in row.items():
            if not _fits(value, columns[key]):
                why[i] = f"field {key!r} holds a {_kind(value)} where its column holds {columns[key]}"
                break
    while True:
        good = [row for i, row in enumerate(rows) if i not in why]
        if not good:
            return None, [(row, why[i]) for i, row in enumerate(rows) if i in why]
        try:
            table = pa.table({key: _array([row.get(key) for row in good], columns[key]) for key in keys})
        except Exception:
            before = len(why)
            for i, row in enumerate(rows):
                if i in why:
                    continue
                for key, value in row.items():
                    try:
                        _array([value], columns[key])
                    except Exception as exc:
                        why[i] = f"field {key!r} holds a value that Parquet cannot store ({type(exc).__name__})"
                        break
            if len(why) == before:  # no single value is at fault: refuse the rest rather than loop
                why.update({i: "the rows cannot form one table" for i in range(len(rows)) if i not in why})
            continue
        return table, [(row, why[i]) for i, row in enumerate(rows) if i in why]


def _array(values: list[Any], kind: str) -> pa.Array:
    arrow = _ARROW.get(kind)
    return pa.array(values, type=arrow) if arrow is not None else pa.array(values)


class ParquetLog:
    """Rows buffered in memory and flushed as one Parquet file per buffer under ``<root>/<prefix>``.

    ``wal_dir`` makes the log durable: :meth:`append` returns only once the rows are fsynced to a local write-ahead
    file there, and the rows orphaned by an earlier process in that directory are written by the first flush.
    ``max_pending_rows`` bounds what a non-durable log keeps in memory while the storage refuses writes.
    """

    def __init__(
        self,
        registry_url: str,
        prefix: str,
        *,
        buffer_rows: int = 1000,
        wal_dir: str | Path | None = None,
        max_pending_rows: int | None = None,
    ) -> None:
        if buffer_rows < 1:
            raise ValueError(f"buffer_rows must be at least 1, got {buffer_rows}")
        self.registry_url = registry_url
        self.prefix = prefix.strip("/")
        parent, _, name = self.prefix.rpartition("/")
        self.name = name
        self.quarantine_prefix = f"{parent}/quarantine/{name}" if parent else f"quarantine/{name}"
        self.buffer_rows = buffer_rows
        self.max_pending_rows = max_pending_rows if max_pending_rows is not None else 100 * buffer_rows
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # guards the buffer, the write-ahead file and the counters
        self._write_lock = threading.Lock()  # one write at a time, so sealed segments match the rows written
        self._fs: tuple[Any, str] | None = None
        self._wal = WriteAheadLog(wal_dir) if wal_dir is not None else None
        self._sealed: list[Segment] = []
        self._retry_at = 0.0
        self.files: list[str] = []
        self.written = 0  # rows in Parquet files
        self.quarantined = 0  # rows in quarantine files
        self.dropped = 0  # rows neither written nor quarantined (see the module docstring for when)
        self.write_failures = 0
        self.last_error: str | None = None
        if self._wal is not None:
            self._recover()

    @property
    def durable(self) -> bool:
        return self._wal is not None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Buffer the rows (after the write-ahead file holds them, for a durable log); write a file when full."""
        full = False
        with self._lock:
            if self._wal is not None:
                self._wal.append(rows)  # raises OSError when the local disk refuses: the request then fails
            self._rows.extend(dict(r) for r in rows)
            full = len(self._rows) >= self.buffer_rows and time.monotonic() >= self._retry_at
        if full:
            self.flush()

    def flush(self) -> str | None:
        """Write what is buffered (if anything); returns the file written. Never raises."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
                if self._wal is not None:
                    sealed = self._wal.seal()
                    if sealed is not None:
                        self._sealed.append(sealed)
                segments, self._sealed = self._sealed, []
            if not rows:
                self._release(segments)
                return None
            try:
                return self._write(rows, segments)
            except Exception as exc:  # the writer must never die; nothing is lost: the rows go back
                log.exception("log %s could not write %d rows", self.prefix, len(rows))
                self._requeue(rows, segments, exc)
                return None

    def close(self) -> None:
        """Release the write-ahead files without writing (what a crash leaves; the next start replays them)."""
        with self._lock:
            if self._wal is not None:
                self._wal.close()
            segments, self._sealed = self._sealed, []
        for segment in segments:
            segment.close()

    def _write(self, rows: list[dict[str, Any]], segments: list[Segment]) -> str | None:
        table, refused = to_table(rows)
        if refused:
            self._quarantine(refused)
        if self._fs is None:
            self._fs = storage.open_fs(self.registry_url)
        fs, root = self._fs
        path = None
        if table is not None:
            now = datetime.now(UTC)
            day, name = segments[0].parquet_name() if segments else (f"{now:%Y-%m-%d}", "")
            name = name or f"{now:%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
            path = f"{root.rstrip('/')}/{self.prefix}/{day}/{name}"
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            try:
                storage.atomic_write_bytes(fs, path, buffer.getvalue())
            except Exception as exc:
                log.error("could not write %d log rows to %s (kept, to retry): %s", table.num_rows, path, exc)
                self._requeue([dict(r) for r in rows if not any(r is q for q, _ in refused)], segments, exc)
                return None
            self.files.append(path)
        with self._lock:
            self.written += table.num_rows if table is not None else 0
            self.last_error = None
        self._release(segments, delete=True)
        return path

    def _requeue(self, rows: list[dict[str, Any]], segments: list[Segment], exc: BaseException) -> None:
        with self._lock:
            self.write_failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._retry_at = time.monotonic() + RETRY_S
            self._rows[:0] = rows
            self._sealed[:0] = segments
            over = len(self._rows) - self.max_pending_rows
            if over > 0 and self._wal is None:
                del self._rows[:over]
                self.dropped += over
                log.error("log %s dropped its %d oldest rows: the storage refuses writes (%s)", self.prefix, over, exc)

    def _quarantine(self, refused: list[tuple[Mapping[str, Any], str]]) -> None:
        lines = [
            json.dumps({"reason": why, "row": dict(row)}, ensure_ascii=True, default=repr).encode("ascii") + b"\n"
            for row, why in refused
        ]
        now = datetime.now(UTC)
        try:
            if self._fs is None:
                self._fs = storage.open_fs(self.registry_url)
            fs, root = self._fs
            path = (
                f"{root.rstrip('/')}/{self.quarantine_prefix}/{now:%Y-%m-%d}/{now:%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl"
            )
            storage.atomic_write_bytes(fs, path, b"".join(lines))
        except Exception as exc:
            with self._lock:
                self.dropped += len(refused)
            log.error("log %s lost %d rows it could neither write nor quarantine: %s", self.prefix, len(refused), exc)
            return
        with self._lock:
            self.quarantined += len(refused)
        log.warning("log %s quarantined %d rows in %s: %s", self.prefix, len(refused), path, refused[0][1])

    def _release(self, segments: list[Segment], *, delete: bool = False) -> None:
        for segment in segments:
            if delete or segment.rows == 0:
                segment.delete()
            else:
                segment.close()

    def _recover(self) -> None:
        """Take the rows of segments orphaned by a dead process into the buffer (the next flush writes them)."""
        assert self._wal is not None
        for segment in self._wal.orphans():
            rows = segment.read()
            log.warning("log %s recovered %d acknowledged rows from %s", self.prefix, len(rows), segment.path)
            with self._lock:
                self._rows.extend(rows)
                self._sealed.append(segment)


class PredictionLog(ParquetLog):
    """Samples predictions at ``sample_rate`` (0..1) and logs them without PII."""

    def __init__(
        self, registry_url: str, model: str, *, sample_rate: float, buffer_rows: int = 1000, seed: int | None = None
    ) -> None:
        if not 0 <= sample_rate <= 1:
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate}")
        super().__init__(registry_url, layout.online_dir("", model, "predictions"), buffer_rows=buffer_rows)
        self.sample_rate = sample_rate
        self._random = random.Random(seed)

    def record(
        self,
        loaded: LoadedModel,
        records: Sequence[Mapping[str, Any]],
        response: PredictResponse,
        *,
        role: str = "answer",
        latency_ms: float | None = None,
    ) -> int:
        """Log the sampled ones of these predictions (``role``: answer or shadow; ``latency_ms``: the version's time
        on the whole request); returns how many were logged."""
        if self.sample_rate <= 0:
            return 0
        schema = loaded.schema
        binary = schema.kind == "binary"
        ts = datetime.now(UTC).isoformat(timespec="microseconds")
        request = uuid.uuid4().hex[:16]
        rows = []
        for record, p in zip(records, response.predictions, strict=True):
            if self.sample_rate < 1 and self._random.random() >= self.sample_rate:
                continue
            row: dict[str, Any] = {
                "prediction_id": p.prediction_id,
                "ts": ts,
                "model": response.model,
                "version": response.version,
                "role": role,
                **answer_columns(p, binary=binary),
                "request": request,
                "latency_ms": latency_ms,
            }
            if schema.id is not None:
                value = record.get(schema.id)
                row[schema.id] = None if value is None else str(value)
            for f in schema.features:
                value = record.get(f.name)
                row[f.name] = (None if value is None else float(value)) if f.type == "numeric" else value
            rows.append(row)
        if rows:
            self.append(rows)
        return len(rows)


class FeedbackLog(ParquetLog):
    """Ground-truth labels sent back by prediction id."""

    def __init__(
        self, registry_url: str, model: str, *, buffer_rows: int = 1000, wal_dir: str | Path | None = None
    ) -> None:
        super().__init__(
            registry_url, layout.online_dir("", model, "feedback"), buffer_rows=buffer_rows, wal_dir=wal_dir
        )

    def record(self, items: Sequence[tuple[str, str | float]]) -> int:
        """Store (prediction id, label) pairs: the label as text for a classifier, a float for a regressor."""
        ts = datetime.now(UTC).isoformat(timespec="microseconds")
        self.append([{"prediction_id": pid, "label": label, "ts": ts} for pid, label in items])
        return len(items)


class Flusher:
    """Flushes logs every ``interval_s`` seconds in a daemon thread until :meth:`stop` (which flushes once more).

    The thread survives any error of a flush (the log keeps its rows and counts the failure); :attr:`alive` says
    whether it still runs, for ``/readyz``, and :meth:`render` gives every log's counters for ``/metrics``.
    """

    def __init__(self, logs: Sequence[ParquetLog], interval_s: float) -> None:
        self.logs = list(logs)
        self.interval_s = interval_s
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferry-online-flush", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> None:
        for item in self.logs:
            try:
                item.flush()
            except Exception:  # ParquetLog.flush does not raise; a subclass might: the thread goes on regardless
                self.errors += 1
                log.exception("flushing log %s failed", item.prefix)

    @property
    def alive(self) -> bool:
        """True while the flush thread runs (and before :meth:`start`, when there is nothing to run yet)."""
        return self._thread.is_alive() or (self._thread.ident is None and not self._stop.is_set())

    def start(self) -> Flusher:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.flush()

    def render(self) -> str:
        """Prometheus text: whether the writer runs, and each log's written, quarantined, dropped and pending rows."""
        lines = [
            "# HELP ferry_online_log_writer_alive 1 while the thread that writes the logs runs.",
            "# TYPE ferry_online_log_writer_alive gauge",
            f"ferry_online_log_writer_alive {int(self.alive)}",
        ]
        counters = [
            ("ferry_online_log_rows_written_total", "counter", "Log rows written to Parquet files.", "written"),
            (
                "ferry_online_log_rows_quarantined_total",
                "counter",
                "Log rows no Parquet file could hold.",
                "quarantined",
            ),
            ("ferry_online_log_rows_dropped_total", "counter", "Log rows lost (storage down, buffer full).", "dropped"),
            (
                "ferry_online_log_write_failures_total",
                "counter",
                "Writes the storage refused (rows kept).",
                "write_failures",
            ),
            ("ferry_online_log_rows_pending", "gauge", "Log rows buffered, not yet written.", "pending"),
        ]
        for metric, kind, text, attr in counters:
            lines += [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}"]
            lines += [f'{metric}{{log="{item.name}"}} {getattr(item, attr)}' for item in self.logs]
        return "\n".join(lines) + "\n"
