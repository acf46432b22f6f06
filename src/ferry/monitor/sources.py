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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from ferry import storage
from ferry.monitor.sketches import sketch_frame
from ferry.registry import layout
from ferry.registry.store import Registry
from ferry.schema import Schema

__all__ = [
    "SourceData",
    "batch_since",
    "edge_since",
    "feedback_since",
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
        with fs.open(f"{directory.rstrip('/')}/{name}", "rb") as fh:
            frames.append(pq.read_table(io.BytesIO(fh.read())).to_pandas())
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
    storage.atomic_write_bytes(fs, path, buffer.getvalue())
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


def _heartbeats(fs: Any, directory: str, names: Sequence[str]) -> Iterable[dict[str, Any]]:
    """Heartbeats from JSON files (a folder collector) or from the online service's Parquet telemetry log."""
    for name in names:
        with fs.open(f"{directory.rstrip('/')}/{name}", "rb") as fh:
            raw = fh.read()
        if name.endswith(".parquet"):
            for row in pq.read_table(io.BytesIO(raw)).to_pylist():
                sketch = row.get("sketch")
                yield {
                    **{k: row.get(k) for k in ("id", "device", "model", "channel", "version", "sha256", "sent_at")},
                    "health": {"ok": row.get("ok"), "last_error": row.get("last_error"), "stale": row.get("stale")},
                    "sketch": json.loads(sketch) if sketch else None,
                }
            continue
        text = raw.decode("utf-8", errors="replace")
        for line in text.splitlines() if name.endswith(".jsonl") else [text]:
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a torn or foreign file is skipped, not fatal


def edge_since(
    registry: Registry, model: str, schema: Schema, cursor: str | None, *, folder: str | None = None
) -> tuple[list[SourceData], list[dict[str, Any]], str | None]:
    """Edge heartbeats after ``cursor``: one source per cohort (the channel a device follows), made of the drift
    sketches of its devices; also each device's latest heartbeat (for ``ferry status``) and the new cursor.

    Heartbeats come from the online service's telemetry log in the registry, or from ``folder`` (a folder
    collector). A heartbeat delivered twice (an agent resends one whose answer it missed) counts once.
    """
    fs, root = storage.open_fs(folder) if folder else _fs(registry)
    directory = root if folder else layout.online_dir(root, model, "telemetry")
    names = _files_after(fs, directory, cursor, (".json", ".jsonl") if folder else (".parquet",))
    if not names:
        return [], [], cursor
    sketches: dict[str, list[dict[str, Any]]] = {}
    versions: dict[str, dict[str, int]] = {}
    latest: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for beat in _heartbeats(fs, directory, names):
        if beat.get("model") not in (None, model) or beat.get("id") in seen:
            continue
        if beat.get("id"):
            seen.add(str(beat["id"]))
        device = str(beat.get("device"))
        if device not in latest or str(beat.get("sent_at", "")) >= str(latest[device].get("sent_at", "")):
            latest[device] = beat
        sketch = beat.get("sketch")
        if not sketch or not sketch.get("rows"):
            continue
        cohort = str(beat.get("channel") or "edge")
        sketches.setdefault(cohort, []).append(sketch)
        per = versions.setdefault(cohort, {})
        per[str(beat.get("version"))] = per.get(str(beat.get("version")), 0) + int(sketch["rows"])
    sources = []
    for cohort, parts in sorted(sketches.items()):
        frame = sketch_frame(parts, schema)
        rows = sum(int(p["rows"]) for p in parts)
        sources.append(SourceData(f"edge:{cohort}", frame, rows, versions[cohort], None))
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
