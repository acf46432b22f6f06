"""Online logs per task as the contract spells them (prediction rows with the task's columns, feedback with a
label per prediction id), written straight into a registry's storage; and small registries of schema-only versions
for judging logs without a trained model."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ferry import storage
from ferry.registry import Registry, layout

MULTICLASS = {
    "name": "parts",
    "task": "multiclass",
    "target": "defect",
    "target_classes": ["none", "scratch", "dent"],
    "features": [{"name": "speed", "type": "numeric"}],
}
REGRESSION = {
    "name": "stores",
    "task": "regression",
    "target": "units",
    "target_min": 0,
    "features": [{"name": "price", "type": "numeric"}],
}


def _write(registry: Registry, model: str, kind: str, rows: list[dict[str, Any]]) -> None:
    fs, root = registry.open_store()
    now = datetime.now(UTC)
    name = f"{now:%Y-%m-%d}/{now:%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    storage.atomic_write_bytes(fs, f"{layout.online_dir(root, model, kind)}/{name}", buffer.getvalue())


def log_answers(
    registry: Registry,
    model: str,
    version: str,
    records: Sequence[Mapping[str, Any]],
    answers: Sequence[Mapping[str, Any]],
    *,
    role: str = "answer",
    latency_ms: float | None = None,
) -> list[str]:
    """Log one prediction row per record as the online service does for the task of ``answers`` (rows in
    :mod:`ferry.scoring`'s output contract: ``label`` and ``probabilities``, or ``value``, ``lower`` and ``upper``);
    returns the prediction ids."""
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    request = uuid.uuid4().hex[:16]
    rows = []
    for record, answer in zip(records, answers, strict=True):
        row: dict[str, Any] = {
            "prediction_id": uuid.uuid4().hex,
            "ts": ts,
            "model": model,
            "version": version,
            "role": role,
            "request": request,
            "latency_ms": latency_ms,
        }
        if "value" in answer:
            row |= {k: float(answer[k]) for k in ("value", "lower", "upper")}
        else:
            probs = {str(c): float(p) for c, p in answer["probabilities"].items()}
            row["prediction"] = str(answer["label"])
            if len(probs) == 2:
                row["p_positive"] = list(probs.values())[-1]
            row |= {f"prob_{c}": p for c, p in probs.items()}
        rows.append(row | dict(record))
    _write(registry, model, "predictions", rows)
    return [r["prediction_id"] for r in rows]


def send_feedback(registry: Registry, model: str, items: Sequence[tuple[str, Any]]) -> None:
    """Labels as the feedback log holds them: text for a classifier, a float for a regressor."""
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    _write(registry, model, "feedback", [{"prediction_id": pid, "label": label, "ts": ts} for pid, label in items])


def schema_only_registry(path: Path, schema: Mapping[str, Any], *, notes: Sequence[str], coverage: float = 0.9) -> Any:
    """A registry with one gate-passed version per note of a model known only by its schema (and, for a regressor,
    its interval's declared ``coverage``); the first is ``online/champion``, the second ``online/challenger``."""
    registry = Registry(str(path / "registry"), actor="tester@ferry")
    ids = []
    for note in notes:
        work = path / note
        work.mkdir(parents=True)
        (work / "schema.json").write_text(json.dumps(schema))
        (work / "lineage.json").write_text(json.dumps({"note": note}))
        files = {"schema.json": work / "schema.json", "lineage.json": work / "lineage.json"}
        if schema["task"] == "regression":
            (work / "interval.json").write_text(json.dumps({"coverage": coverage, "half_width": 1.0}))
            files["interval.json"] = work / "interval.json"
        ids.append(registry.register(str(schema["name"]), files, {"gate": {"passed": True}}).id)
    for vid, channel in zip(ids, ("online/champion", "online/challenger"), strict=False):
        registry.promote(vid, channel, model=str(schema["name"]), reason="test")
    return registry, ids
