"""Sketches and the reference: what a device reports instead of rows, and what every source is compared with.

A device's heartbeat carries per-feature quantiles and category counts; :func:`sketch_frame` turns them into rows
Evidently can compare, and :func:`reference_sketch` makes the same sketch of a version's reference sample.
:func:`reference_of` loads that reference, with the version's own answers as the task's prediction columns
(:mod:`ferry.monitor.answers`).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ferry.errors import FerryError
from ferry.registry.store import Registry
from ferry.registry.versions import ModelVersion
from ferry.schema import Schema

__all__ = [
    "QUANTILES",
    "SKETCH_MIN_COUNT",
    "SKETCH_POINTS",
    "reference_of",
    "reference_sketch",
    "sketch_frame",
]


SKETCH_POINTS = 200
"""Values drawn per numeric feature from a sketch's quantile function (and from the reference's, alike)."""


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

SKETCH_MIN_COUNT = 20
"""Values of a feature before a device sends its distribution (the edge agent's ``sketch_min_count`` default)."""


def _from_quantiles(quantiles: Sequence[float], n: int) -> np.ndarray:
    """``n`` values spread evenly over the quantile function given at QUANTILES (linear between, flat outside)."""
    probs = (np.arange(n) + 0.5) / n
    return np.interp(probs, QUANTILES, np.asarray(quantiles, dtype=np.float64))


def _withheld(part: Mapping[str, Any], numeric: bool) -> bool:
    """A device saw values of the feature but kept their distribution back (fewer than its sketch_min_count)."""
    if not int(part.get("count", 0) or 0):
        return False
    if numeric:
        return not part.get("quantiles")
    return not part.get("counts") and not part.get("other")


def sketch_frame(sketches: Sequence[Mapping[str, Any]], schema: Schema, *, points: int = SKETCH_POINTS) -> pd.DataFrame:
    """A frame that stands for device inputs known only through drift sketches (edge telemetry).

    Numeric features: values drawn evenly from each sketch's quantile function (in proportion to its rows) plus
    its missing values; categorical features: declared levels, ``<other>`` and missing in the sketched proportions.
    A sketch that withheld a feature's distribution (a device with too few values to send one without revealing a
    row) is left out for that feature, and its share goes to the others. The reference goes through the same
    transformation (:func:`reference_sketch`) so both sides lose the same detail.
    """
    total = sum(int(s.get("rows", 0)) for s in sketches)
    if total <= 0:
        raise FerryError("the drift sketches hold no rows")
    columns: dict[str, list[Any]] = {}
    for f in schema.features:
        numeric = f.type == "numeric"
        kind = "numeric" if numeric else "categorical"
        parts = [(s, s.get(kind, {}).get(f.name, {})) for s in sketches]
        known = [(s, part) for s, part in parts if not _withheld(part, numeric)] or parts
        rows = sum(int(s.get("rows", 0)) for s, _ in known) or total
        values: list[Any] = []
        for s, part in known:
            n = max(1, round(points * int(s.get("rows", 0)) / rows))
            if numeric:
                count, missing = int(part.get("count", 0)), int(part.get("missing", 0))
                qs = [part.get("quantiles", {}).get(f"p{int(q * 100)}") for q in QUANTILES]
                seen = count + missing
                n_missing = round(n * missing / seen) if seen else n
                if None in qs or not count:
                    values += [math.nan] * n
                    continue
                values += _from_quantiles([float(q) for q in qs], n - n_missing).tolist() + [math.nan] * n_missing
            else:
                counts = {**part.get("counts", {}), **({"<other>": part["other"]} if part.get("other") else {})}
                if part.get("missing"):
                    counts["<missing>"] = part["missing"]
                seen = sum(counts.values())
                if not seen:
                    values += [None] * n
                    continue
                for cat, c in counts.items():
                    values += [None if cat == "<missing>" else cat] * round(n * c / seen)
        columns[f.name] = values
    length = min(len(v) for v in columns.values())
    return pd.DataFrame({k: v[:length] for k, v in columns.items()})


def reference_sketch(
    reference: pd.DataFrame, schema: Schema, *, top_k: int = 50, min_count: int = SKETCH_MIN_COUNT
) -> dict[str, Any]:
    """The reference summarised exactly as a device's DriftSketch summarises its inputs: quantiles per numeric
    feature, counts of the declared levels per categorical feature with every other value as ``other``, and no
    distribution for a feature with fewer than ``min_count`` values."""
    numeric, categorical = {}, {}
    for f in schema.features:
        col = reference[f.name]
        if f.type == "numeric":
            values = pd.to_numeric(col, errors="coerce").dropna().to_numpy(dtype=np.float64)
            qs = np.quantile(values, QUANTILES).tolist() if len(values) >= max(1, min_count) else []
            numeric[f.name] = {
                "count": len(values),
                "missing": int(col.isna().sum()),
                "quantiles": dict(zip([f"p{int(q * 100)}" for q in QUANTILES], qs, strict=False)),
            }
        else:
            present = col.dropna().astype(str)
            levels = set(f.levels or ())
            count = len(present)
            if count >= min_count:
                declared = present[present.isin(levels)].value_counts()
                top = {str(k): int(v) for k, v in declared.head(top_k).items()}
                other = count - sum(top.values())
            else:
                top, other = {}, 0
            categorical[f.name] = {"count": count, "missing": int(col.isna().sum()), "counts": top, "other": other}
    return {"rows": len(reference), "numeric": numeric, "categorical": categorical}


def reference_of(registry: Registry, version: ModelVersion) -> tuple[pd.DataFrame, Schema]:
    """The version's reference sample (training rows kept for drift checks) with the task's prediction columns
    scored by its own ONNX model, and its schema."""
    from ferry.data import to_onnx_inputs
    from ferry.monitor.answers import answer_columns
    from ferry.scoring import OnnxScorer

    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    try:
        reference = pd.read_parquet(io.BytesIO(registry.read_bytes(version, "reference.parquet")))
    except FileNotFoundError as exc:
        raise FerryError(f"version {version.id} has no reference.parquet; it cannot be monitored for drift") from exc
    found = OnnxScorer(registry.read_bytes(version, "model.onnx")).answer(to_onnx_inputs(reference, schema))
    return reference.assign(**answer_columns(found, schema)), schema
