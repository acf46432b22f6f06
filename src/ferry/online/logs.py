"""Prediction and feedback logs: buffered rows written as Parquet files into the registry's storage.

Layout under the registry root, read by the monitor flow::

    models/<model>/online/predictions/<date>/<time>-<uuid>.parquet   sampled predictions
    models/<model>/online/feedback/<date>/<time>-<uuid>.parquet      ground-truth labels by prediction id

A prediction row holds its id, time, version, role (answer or shadow), predicted class and probability of the
positive class, ``request`` (an id shared by the rows of one request) and ``latency_ms`` (how long the version took
to check and score that request: what the staged rollout compares between champion and challenger), the id column
when the request sent one, and the features as sent. PII fields are never written (they are not features). Each
log keeps at most ``buffer_rows`` rows in memory and writes a file when the buffer is full or :meth:`flush` is
called, so a crash loses at most one buffer. Files are written atomically (temp name, then rename).
"""

from __future__ import annotations

import io
import logging
import random
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ferry import storage
from ferry.online.holder import LoadedModel
from ferry.online.predict import PredictResponse

__all__ = ["FeedbackLog", "Flusher", "ParquetLog", "PredictionLog"]

log = logging.getLogger("ferry.online.logs")


class ParquetLog:
    """Rows buffered in memory and flushed as one Parquet file per buffer under ``<root>/<prefix>``."""

    def __init__(self, registry_url: str, prefix: str, *, buffer_rows: int = 1000) -> None:
        if buffer_rows < 1:
            raise ValueError(f"buffer_rows must be at least 1, got {buffer_rows}")
        self.registry_url = registry_url
        self.prefix = prefix.strip("/")
        self.buffer_rows = buffer_rows
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._fs: tuple[Any, str] | None = None
        self.files: list[str] = []

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        full: list[dict[str, Any]] = []
        with self._lock:
            self._rows.extend(dict(r) for r in rows)
            if len(self._rows) >= self.buffer_rows:
                full, self._rows = self._rows, []
        if full:
            self._write(full)

    def flush(self) -> str | None:
        """Write what is buffered (if anything); returns the file written."""
        with self._lock:
            rows, self._rows = self._rows, []
        return self._write(rows) if rows else None

    def _write(self, rows: list[dict[str, Any]]) -> str | None:
        if self._fs is None:
            self._fs = storage.open_fs(self.registry_url)
        fs, root = self._fs
        now = datetime.now(UTC)
        path = f"{root.rstrip('/')}/{self.prefix}/{now:%Y-%m-%d}/{now:%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        try:
            storage.atomic_write_bytes(fs, path, buffer.getvalue())
        except OSError as exc:
            log.error("could not write %d log rows to %s: %s", len(rows), path, exc)
            return None
        self.files.append(path)
        return path


class PredictionLog(ParquetLog):
    """Samples predictions at ``sample_rate`` (0..1) and logs them without PII."""

    def __init__(
        self, registry_url: str, model: str, *, sample_rate: float, buffer_rows: int = 1000, seed: int | None = None
    ) -> None:
        if not 0 <= sample_rate <= 1:
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate}")
        super().__init__(registry_url, f"models/{model}/online/predictions", buffer_rows=buffer_rows)
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
        positive = str(schema.target_classes[1])
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
                "prediction": str(p.prediction),
                "p_positive": p.probabilities[positive],
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

    def __init__(self, registry_url: str, model: str, *, buffer_rows: int = 1000) -> None:
        super().__init__(registry_url, f"models/{model}/online/feedback", buffer_rows=buffer_rows)

    def record(self, items: Sequence[tuple[str, str]]) -> int:
        ts = datetime.now(UTC).isoformat(timespec="microseconds")
        self.append([{"prediction_id": pid, "label": label, "ts": ts} for pid, label in items])
        return len(items)


class Flusher:
    """Flushes logs every ``interval_s`` seconds in a daemon thread until :meth:`stop` (which flushes once more)."""

    def __init__(self, logs: Sequence[ParquetLog], interval_s: float) -> None:
        self.logs = list(logs)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferry-online-flush", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> None:
        for item in self.logs:
            item.flush()

    def start(self) -> Flusher:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.flush()
