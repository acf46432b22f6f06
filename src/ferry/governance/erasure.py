"""Erasure: remove one data subject's rows, found by the schema's id column, from everything ferry keeps.

``ferry forget --id ID`` runs :func:`forget`. For each model whose schemas declare an id column it removes:

- the subject's rows of the online prediction log, and the feedback (late labels) of those predictions (feedback
  still in a running service's write-ahead file, for a few seconds until its next flush, carries only a prediction
  id and a label; run ``forget`` again after the flush to remove it too);
- quarantined log rows that carry the id;
- the subject's rows of the batch input samples;
- the subject's rows of a version's reference sample (versions registered before reference samples dropped ids;
  :meth:`ferry.registry.Registry.redact` keeps the manifest true);
- and, given the work directory, the subject's rows of every retrain run's Parquet files.

Files are rewritten whole and atomically (a reader sees the old file or the new one) and a file left empty is
deleted. Counts come back per place, and each model's audit log gets one erasure record with its counts (and those
of the run directories); the id itself is never written anywhere: the record carries a keyed hash of it
(:func:`subject_hash`). Drift reports and sketches hold no rows, so they need nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ferry import storage
from ferry.errors import FerryError
from ferry.registry import Registry, layout

__all__ = ["Erasure", "forget", "subject_hash"]


@dataclass
class Erasure:
    """What one erasure removed (or would remove, on a dry run): rows per place, and the files changed."""

    subject: str  # the keyed hash, never the id
    counts: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    dry_run: bool = False
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    model: str = ""  # the model being erased from, while :func:`forget` runs

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def add(self, place: str, rows: int, path: str) -> None:
        if rows:
            self.counts[place] = self.counts.get(place, 0) + rows
            per_model = self.by_model.setdefault(self.model, {})
            per_model[place] = per_model.get(place, 0) + rows
            self.files.append(path)

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "rows": self.rows, "counts": self.counts, "dry_run": self.dry_run}


def subject_hash(subject_id: str, key: bytes) -> str:
    """The keyed hash (HMAC-SHA256) that stands for a subject's id in the audit log: whoever holds the key can show
    that an id was erased; nobody can turn the hash back into the id or test guesses without the key."""
    return hmac.new(key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()


def _erasure_key(fs: Any, root: str) -> bytes:
    """The registry's erasure key (``governance/erasure.key``), made on first use."""
    path = layout.governance_file(root, "erasure.key")
    if storage.exists(fs, path):
        return bytes.fromhex(storage.read_bytes(fs, path).decode().strip())
    key = secrets.token_bytes(32)
    storage.atomic_write_bytes(fs, path, key.hex().encode(), mode=0o600)
    return key


def _id_columns(registry: Registry, model: str) -> set[str]:
    names = set()
    for v in registry.versions(model):
        if "schema.json" in v.files:
            schema_id = json.loads(registry.read_bytes(v, "schema.json")).get("id")
            if schema_id:
                names.add(str(schema_id))
    return names


def _split(table: pa.Table, column: str, values: Iterable[str]) -> tuple[pa.Table, pa.Table | None]:
    """``table`` without the rows whose ``column`` (as text) is one of ``values``, and those rows (None when none)."""
    if column not in table.column_names:
        return table, None
    wanted = pa.array(sorted(set(values)), type=pa.string())
    hit = pc.fill_null(pc.is_in(pc.cast(table[column], pa.string()), value_set=wanted), False)
    if not pc.any(hit).as_py():
        return table, None
    return table.filter(pc.invert(hit)), table.filter(hit)


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _rewrite_parquet(
    fs: Any, path: str, column_values: dict[str, set[str]], out: Erasure, place: str, *, keep: str | None = None
) -> set[str]:
    """Remove matching rows from one Parquet file; returns the values of ``keep`` in the rows removed."""
    table = pq.read_table(io.BytesIO(storage.read_bytes(fs, path)))
    removed_rows = 0
    kept_values: set[str] = set()
    for column, values in column_values.items():
        if not values:
            continue
        table, removed = _split(table, column, values)
        if removed is None:
            continue
        removed_rows += removed.num_rows
        if keep is not None and keep in removed.column_names:
            kept_values.update(str(v) for v in removed[keep].to_pylist() if v is not None)
    if removed_rows:
        out.add(place, removed_rows, path)
        if not out.dry_run:
            if table.num_rows == 0:
                fs.rm(path)
            else:
                storage.atomic_write_sealed(fs, path, _parquet_bytes(table))
    return kept_values


def _files(fs: Any, directory: str, suffix: str) -> list[str]:
    if not storage.exists(fs, directory):
        return []
    return sorted(str(p) for p in fs.find(directory) if str(p).endswith(suffix))


def _rewrite_jsonl(fs: Any, path: str, fields: dict[str, set[str]], out: Erasure, place: str) -> None:
    """Remove the JSON lines any of whose ``fields`` (at the top or under ``record``/``row``) holds a value."""
    kept, removed = [], 0
    for line in storage.read_bytes(fs, path).decode("utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            kept.append(line)
            continue
        found = [obj] + [obj[k] for k in ("record", "row", "rows") if isinstance(obj, dict) and k in obj]
        flat = [x for item in found for x in (item if isinstance(item, list) else [item]) if isinstance(x, dict)]
        if any(str(d.get(name)) in values for d in flat for name, values in fields.items() if name in d):
            removed += 1
        else:
            kept.append(line)
    if removed:
        out.add(place, removed, path)
        if not out.dry_run:
            storage.atomic_write_sealed(fs, path, "".join(f"{line}\n" for line in kept).encode())


def forget(
    registry: Registry,
    subject_id: str,
    *,
    models: Iterable[str] | None = None,
    work_dir: str | Path | None = None,
    dry_run: bool = False,
) -> Erasure:
    """Remove every row of the subject whose id is ``subject_id`` (see the module docstring for where)."""
    if not subject_id.strip():
        raise FerryError("forget needs a non-empty id (--id)")
    fs, root = storage.open_fs(registry.url)
    out = Erasure(subject=subject_hash(subject_id, _erasure_key(fs, root)), dry_run=dry_run)
    names = list(models) if models is not None else registry.models()
    id_columns: set[str] = set()
    for model in names:
        out.model = model
        columns = _id_columns(registry, model)
        id_columns |= columns
        by_id = {c: {subject_id} for c in columns}
        predictions: set[str] = set()
        for path in _files(fs, layout.online_dir(root, model, "predictions"), ".parquet"):
            predictions |= _rewrite_parquet(fs, path, by_id, out, "predictions", keep="prediction_id")
        by_prediction = {"prediction_id": predictions}
        if predictions:
            for path in _files(fs, layout.online_dir(root, model, "feedback"), ".parquet"):
                _rewrite_parquet(fs, path, by_prediction, out, "feedback")
        for path in _files(fs, layout.online_dir(root, model, "quarantine"), ".jsonl"):
            _rewrite_jsonl(fs, path, {**by_id, **by_prediction}, out, "quarantine")
        for path in _files(fs, layout.batch_inputs_dir(root, model), ".parquet"):
            _rewrite_parquet(fs, path, by_id, out, "batch inputs")
        for v in registry.versions(model):
            if "reference.parquet" not in v.files:
                continue
            table = pq.read_table(io.BytesIO(registry.read_bytes(v, "reference.parquet")))
            for column in columns & set(table.column_names):
                table, removed = _split(table, column, {subject_id})
                if removed is not None:
                    out.add("reference samples", removed.num_rows, registry.file_url(v, "reference.parquet"))
                    if not dry_run:
                        v = registry.redact(v, "reference.parquet", _parquet_bytes(table))
    out.model = "(run directories)"
    if work_dir is not None and Path(work_dir).is_dir():
        local = storage.local_fs()
        by_id = {c: {subject_id} for c in id_columns}
        for run_file in sorted(Path(work_dir).rglob("*.parquet")):
            _rewrite_parquet(local, str(run_file), by_id, out, "run directories")
    if not dry_run and out.rows:
        runs = out.by_model.get("(run directories)", {})
        for model in names:
            counts = {**out.by_model.get(model, {}), **runs}
            if counts:
                registry.record_erasure(model, out.subject, counts)
    return out
