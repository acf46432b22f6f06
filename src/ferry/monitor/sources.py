"""What production produced since the monitor's last run, read from the registry's storage by cursor.

Sources, all under the registry root so one URL is enough (``models/<model>/...``)::

    online/predictions/<date>/<time>-<id>.parquet    sampled online predictions (the service's prediction log)
    online/feedback/<date>/<time>-<id>.parquet       labels sent back by prediction id
    batch/inputs/<time>-<id>.parquet                 a sample of each batch run's input, with its predictions
    online/telemetry/<date>/<time>-<id>.parquet      edge heartbeats the online service received (/telemetry)

and edge heartbeats in a folder collector (one JSON file per heartbeat), when one is given. Each reader returns only
the files after the source's cursor, and the new cursor.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ferry import storage
from ferry.monitor.cohorts import CohortSketch
from ferry.monitor.sketches import sketch_frame
from ferry.registry import layout
from ferry.registry.store import Registry
from ferry.schema import Schema

__all__ = [
    "SourceData",
    "batch_since",
    "edge_since",
    "feedback_since",
    "heartbeat_batches",
    "logged_since",
    "online_logs_since",
    "online_since",
    "read_labels",
    "record_batch_input",
]


def _fs(registry: Registry) -> tuple[Any, str]:
    return registry.open_store()


def _files_after(fs: Any, directory: str, cursor: str | None, suffixes: tuple[str, ...]) -> list[str]:
    """Files below ``directory`` whose path relative to it sorts after ``cursor`` (names sort by time)."""
    try:
        found = fs.find(directory)
    except FileNotFoundError:
        return []
    prefix = directory.rstrip("/") + "/"
    names = sorted(
        str(p)[len(prefix) :]
        for p in found
        if str(p).endswith(suffixes) and not str(p).rpartition("/")[2].startswith((".", "_"))
    )
    return [n for n in names if cursor is None or n > cursor]


@dataclass(frozen=True)
class SourceData:
    """New rows of one source: features (and the task's prediction columns when known), the versions that produced
    them, and the cursor to save once they are judged."""

    source: str
    frame: pd.DataFrame
    rows: int
    versions: dict[str, int]
    cursor: str | None


def _read_parquets(fs: Any, directory: str, names: Sequence[str]) -> pd.DataFrame:
    frames = []
    for name in names:
        raw = storage.read_bytes(fs, f"{directory.rstrip('/')}/{name}")
        frames.append(pq.read_table(io.BytesIO(raw)).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _versions(frame: pd.DataFrame) -> dict[str, int]:
    if "version" not in frame.columns or frame.empty:
        return {}
    return {str(k): int(v) for k, v in frame["version"].value_counts().items()}


def online_since(registry: Registry, model: str, cursor: str | None, *, max_rows: int) -> SourceData | None:
    """Answers the online service logged after ``cursor`` (shadow answers left out), newest ``max_rows`` kept; None
    when nothing is new."""
    fs, root = _fs(registry)
    directory = layout.online_dir(root, model, "predictions")
    names = _files_after(fs, directory, cursor, (".parquet",))
    if not names:
        return None
    frame = _read_parquets(fs, directory, names)
    if "role" in frame.columns:
        frame = frame[frame["role"] != "shadow"]
    frame = frame.tail(max_rows).reset_index(drop=True)
    return SourceData("online", frame, len(frame), _versions(frame), names[-1])


def feedback_since(registry: Registry, model: str, cursor: str | None) -> tuple[pd.DataFrame | None, str | None]:
    """Labels sent to the service's ``/feedback`` after ``cursor`` (prediction_id, label: text for a classifier, a
    float for a regressor), and the new cursor."""
    fs, root = _fs(registry)
    directory = layout.online_dir(root, model, "feedback")
    names = _files_after(fs, directory, cursor, (".parquet",))
    if not names:
        return None, cursor
    frame = _read_parquets(fs, directory, names)
    labels = pd.DataFrame({"prediction_id": frame["prediction_id"].astype(str), "label": frame["label"]})
    return labels, names[-1]


def record_batch_input(
    registry: Registry,
    model: str,
    sample: pd.DataFrame,
    *,
    version: str,
    run: str,
) -> str:
    """Keep a sample of a batch run's input (features and the task's prediction columns,
    :mod:`ferry.monitor.answers`) where the monitor flow reads it."""
    fs, root = _fs(registry)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = f"{layout.batch_inputs_dir(root, model)}/{stamp}-{uuid.uuid4().hex[:8]}.parquet"
    frame = sample.assign(version=version, run=run)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    storage.atomic_write_sealed(fs, path, buffer.getvalue())
    return path


def batch_since(registry: Registry, model: str, cursor: str | None, *, max_rows: int) -> SourceData | None:
    """Input samples of the batch runs recorded after ``cursor``."""
    fs, root = _fs(registry)
    directory = layout.batch_inputs_dir(root, model)
    names = _files_after(fs, directory, cursor, (".parquet",))
    if not names:
        return None
    frame = _read_parquets(fs, directory, names).tail(max_rows).reset_index(drop=True)
    return SourceData("batch", frame, len(frame), _versions(frame), names[-1])


HEARTBEAT_BATCH_ROWS = 1000
"""Heartbeats read at a time: the most rows of the telemetry log a monitor run holds at once."""

_LATEST = ("id", "device", "model", "channel", "version", "sha256", "health", "sent_at")
"""What is kept of each device's latest heartbeat (for ``ferry status``): everything but its sketch."""


def _beat_of_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A heartbeat as the agent sent it, from a row of the online service's Parquet telemetry log."""
    sketch = row.get("sketch")
    return {
        **{k: row.get(k) for k in ("id", "device", "model", "channel", "version", "sha256", "sent_at")},
        "health": {"ok": row.get("ok"), "last_error": row.get("last_error"), "stale": row.get("stale")},
        "sketch": json.loads(sketch) if sketch else None,
    }


def _duplicate_ids(fs: Any, directory: str, names: Sequence[str]) -> set[str]:
    """Ids of heartbeats logged more than once (an agent resends one whose answer it missed), from the id column
    alone: a few bytes per heartbeat, not the heartbeats."""
    ids = []
    for name in names:
        raw = storage.read_bytes(fs, f"{directory.rstrip('/')}/{name}")  # decrypted when sealed at rest
        ids.append(pq.read_table(io.BytesIO(raw), columns=["id"]).column("id").combine_chunks())
    if not ids:
        return set()
    counts = pc.value_counts(pa.chunked_array(ids, type=pa.string()))
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    return {str(v) for v in repeated.to_pylist()}


def heartbeat_batches(
    fs: Any, directory: str, names: Sequence[str], *, batch_rows: int = HEARTBEAT_BATCH_ROWS
) -> Iterator[list[dict[str, Any]]]:
    """Heartbeats of the files ``names`` (the online service's Parquet telemetry log, or a folder collector's JSON
    files) in lists of at most ``batch_rows``, each heartbeat once: a reader holds one list at a time."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    parquet = [n for n in names if n.endswith(".parquet")]
    repeated = _duplicate_ids(fs, directory, parquet)
    seen: set[str] = set()  # only ids logged twice (Parquet), or a folder's ids (one file per heartbeat)
    batch: list[dict[str, Any]] = []
    for name in names:
        raw = storage.read_bytes(fs, f"{directory.rstrip('/')}/{name}")  # one file at a time, decrypted when sealed
        if name.endswith(".parquet"):
            beats: Iterable[dict[str, Any]] = (
                _beat_of_row(row)
                for part in pq.ParquetFile(io.BytesIO(raw)).iter_batches(batch_size=batch_rows)
                for row in part.to_pylist()
            )
        else:
            beats = _json_beats(raw, jsonl=name.endswith(".jsonl"))
        for beat in beats:
            key = str(beat.get("id") or "")
            if key and (key in repeated or not name.endswith(".parquet")):
                if key in seen:
                    continue
                seen.add(key)
            batch.append(beat)
            if len(batch) >= batch_rows:
                yield batch
                batch = []
    if batch:
        yield batch


def _json_beats(raw: bytes, *, jsonl: bool) -> Iterator[dict[str, Any]]:
    text = raw.decode("utf-8", errors="replace")
    for line in text.splitlines() if jsonl else [text]:
        if line.strip():
            try:
                beat = json.loads(line)
            except ValueError:
                continue  # a torn or foreign file is skipped, not fatal
            if isinstance(beat, dict):
                yield beat


def edge_since(
    registry: Registry,
    model: str,
    schema: Schema,
    cursor: str | None,
    *,
    folder: str | None = None,
    batch_rows: int = HEARTBEAT_BATCH_ROWS,
) -> tuple[list[SourceData], list[dict[str, Any]], str | None]:
    """Edge heartbeats after ``cursor``: one source per cohort (the channel a device follows), made of the drift
    sketches of its devices; also each device's latest heartbeat without its sketch (for ``ferry status``) and the
    new cursor.

    Heartbeats come from the online service's telemetry log in the registry, or from ``folder`` (a folder
    collector). A heartbeat delivered twice (an agent resends one whose answer it missed) counts once. They stream
    in lists of ``batch_rows`` into one :class:`~ferry.monitor.cohorts.CohortSketch` per cohort, so a run holds
    the cohorts' sums and one entry per device, never every heartbeat.
    """
    fs, root = storage.open_fs(folder) if folder else _fs(registry)
    directory = root if folder else layout.online_dir(root, model, "telemetry")
    names = _files_after(fs, directory, cursor, (".json", ".jsonl") if folder else (".parquet",))
    if not names:
        return [], [], cursor
    cohorts: dict[str, CohortSketch] = {}
    latest: dict[str, dict[str, Any]] = {}
    for batch in heartbeat_batches(fs, directory, names, batch_rows=batch_rows):
        for beat in batch:
            if beat.get("model") not in (None, model):
                continue
            device = str(beat.get("device"))
            if device not in latest or str(beat.get("sent_at", "")) >= str(latest[device].get("sent_at", "")):
                latest[device] = {k: beat.get(k) for k in _LATEST}
            sketch = beat.get("sketch")
            if not isinstance(sketch, Mapping) or not sketch.get("rows"):
                continue
            cohort = str(beat.get("channel") or "edge")
            if cohort not in cohorts:
                cohorts[cohort] = CohortSketch(schema)
            cohorts[cohort].add(sketch, beat.get("version"))
    sources = [
        SourceData(f"edge:{cohort}", sketch_frame([c.to_sketch()], schema), c.rows, dict(c.versions), None)
        for cohort, c in sorted(cohorts.items())
    ]
    return sources, list(latest.values()), names[-1]


def read_labels(url: str, schema: Schema | None = None) -> pd.DataFrame:
    """A labels file (CSV or Parquet, local or any fsspec URL) with ``prediction_id`` and ``label`` columns.

    A CSV is read as text, so ids never turn into numbers and a label 1 stays "1" (not "1.0"). With ``schema``, the
    labels are checked against its task (:func:`ferry.monitor.quality.check_labels`): a bad one is a DataError
    naming the file, the column and the first bad row.
    """
    from ferry.errors import DataError, DataFormatError

    try:
        if url.lower().endswith((".parquet", ".pq")):
            frame = pd.read_parquet(url)
        else:
            frame = pd.read_csv(url, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"labels file {url} cannot be read: {exc}") from exc
    missing = [c for c in ("prediction_id", "label") if c not in frame.columns]
    if missing:
        raise DataError(f"labels file {url} has no column(s) {missing}; it needs prediction_id and label")
    out = frame[["prediction_id", "label"]]
    out = out[out["prediction_id"].astype(str) != ""].reset_index(drop=True)
    labels = pd.DataFrame({"prediction_id": out["prediction_id"].astype(str), "label": out["label"]})
    if schema is None:
        return labels
    from ferry.monitor.quality import check_labels

    return check_labels(labels, schema, f"labels file {url}")


def logged_since(registry: Registry, model: str, days: float) -> pd.DataFrame:
    """Online predictions logged in the last ``days`` days (answers and shadow answers), to join late labels to."""
    return online_logs_since(registry, model, "predictions", datetime.now(UTC) - timedelta(days=days))


def online_logs_since(registry: Registry, model: str, kind: str, since: datetime) -> pd.DataFrame:
    """Rows of the online service's ``kind`` log (predictions, feedback, telemetry) written at ``since`` or later."""
    fs, root = _fs(registry)
    directory = layout.online_dir(root, model, kind)
    day = since.strftime("%Y-%m-%d")
    names = [n for n in _files_after(fs, directory, None, (".parquet",)) if n[:10] >= day]  # in <date>/ folders
    frame = _read_parquets(fs, directory, names)
    if "ts" in frame.columns:
        frame = frame[pd.to_datetime(frame["ts"], utc=True) >= since]
    out: pd.DataFrame = frame.reset_index(drop=True)
    return out
