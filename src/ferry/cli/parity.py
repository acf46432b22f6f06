"""The same rows through the three surfaces (online service, batch scoring, edge agent), compared bit for bit.

Every surface runs the same ``model.onnx`` on the same float32/string encoding of a record, so their outputs must be
identical, not merely close. :func:`compare` checks that on the raw float32 bits: a classifier's probability of
every class and its predicted class, or a regressor's value, lower and upper bound (:func:`output_columns`).

Explanations too: each surface explains a row with the same runtime, plan and background, one row per onnxruntime
call, so :func:`explanation_key` of the online, batch and edge answer for a row must be equal, float64 for float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq

from ferry.schema import Schema

__all__ = [
    "Parity",
    "Scores",
    "batch_explanations",
    "batch_scores",
    "compare",
    "edge_scores",
    "explanation_key",
    "online_explanations",
    "online_scores",
    "output_columns",
    "records",
]


@dataclass(frozen=True)
class Scores:
    """What one surface answered for a list of rows, in the rows' order."""

    surface: str
    versions: tuple[str, ...]
    ids: tuple[str, ...]
    predictions: npt.NDArray[np.int64]  # class index into target_classes (a regressor: all 0)
    outputs: npt.NDArray[np.float32]  # (rows, columns): per :func:`output_columns`

    @property
    def probabilities(self) -> npt.NDArray[np.float32]:
        """A classifier's probabilities, (rows, classes) in the schema's target_classes order."""
        return self.outputs


def output_columns(schema: Schema) -> list[str]:
    """The compared outputs: each class (its label as text) for a classifier; value, lower, upper for a regressor."""
    if schema.kind == "regression":
        return ["value", "lower", "upper"]
    return [str(c) for c in schema.target_classes]


@dataclass(frozen=True)
class Parity:
    surfaces: tuple[str, str]
    rows: int
    mismatched_rows: int
    max_abs_diff: float
    same_version: bool

    @property
    def identical(self) -> bool:
        return self.rows > 0 and self.mismatched_rows == 0 and self.same_version


def records(frame: pd.DataFrame, schema: Schema) -> list[dict[str, Any]]:
    """The id and feature columns of ``frame`` as JSON-ready records: Python scalars, None for a missing value.

    Floats keep every bit (no decimal rounding as ``DataFrame.to_json`` does), so each surface sees the same value.
    """
    columns = [c for c in (schema.id, *schema.feature_names) if c is not None]
    out: list[dict[str, Any]] = []
    for row in frame[columns].to_dict(orient="records"):
        out.append({str(k): None if _missing(v) else _scalar(v) for k, v in row.items()})
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _scalar(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _ids(rows: Sequence[Mapping[str, Any]], schema: Schema) -> tuple[str, ...]:
    return tuple(str(r[schema.id]) if schema.id else str(i) for i, r in enumerate(rows))


class _Poster(Protocol):
    def post(self, path: str, body: Any, *, key: str, timeout: float = ...) -> Any: ...


def online_scores(
    service: _Poster, key: str, rows: Sequence[Mapping[str, Any]], schema: Schema, *, chunk: int = 500
) -> Scores:
    """POST ``rows`` to the service's ``/predict`` in chunks; JSON numbers carry float32 values exactly."""
    versions: list[str] = []
    answers: list[Mapping[str, Any]] = []
    for start in range(0, len(rows), chunk):
        part = list(rows[start : start + chunk])
        answer = service.post("/predict", {"records": part}, key=key)
        versions += [answer["version"]] * len(answer["predictions"])
        answers += answer["predictions"]
    return _scores("online", tuple(versions), rows, schema, answers)


def _scores(
    surface: str,
    versions: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    schema: Schema,
    answers: Sequence[Mapping[str, Any]],
) -> Scores:
    """Scores from answers in the JSON shape of ``/predict`` (the edge agent's too)."""
    columns = output_columns(schema)
    if schema.kind == "regression":
        predictions = [0] * len(answers)
        outputs = [[a[c] for c in columns] for a in answers]
    else:
        predictions = [columns.index(str(a["prediction"])) for a in answers]
        outputs = [[a["probabilities"][c] for c in columns] for a in answers]
    return Scores(
        surface, versions, _ids(rows, schema), np.asarray(predictions, dtype=np.int64), _float32(outputs, len(columns))
    )


def batch_scores(output_dir: str | Path, rows: Sequence[Mapping[str, Any]], schema: Schema) -> Scores:
    """Read a ``ferry score`` output directory and put its rows in the order of ``rows`` (joined by id)."""
    if schema.id is None:
        raise ValueError("joining batch output back to rows needs the schema's id column")
    files = sorted((Path(output_dir) / "scores").glob("*.parquet"))
    table = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    table[schema.id] = table[schema.id].astype(str)
    ids = _ids(rows, schema)
    indexed = table.set_index(schema.id).loc[list(ids)]
    if schema.kind == "regression":
        predictions = np.zeros(len(ids), dtype=np.int64)
        columns = output_columns(schema)
    else:
        predictions = indexed["prediction"].to_numpy(dtype=np.int64)
        columns = [f"prob_{c}" for c in schema.target_classes]
    return Scores(
        "batch",
        tuple(indexed["model_version"].astype(str)),
        ids,
        predictions,
        indexed[columns].to_numpy(dtype=np.float32),
    )


class _Answer(Protocol):
    @property
    def version(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class _EdgeModel(Protocol):
    version: str

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Sequence[_Answer]: ...


def edge_scores(model: _EdgeModel, rows: Sequence[Mapping[str, Any]], schema: Schema) -> Scores:
    """Score ``rows`` with an edge agent's active model (``ferry_edge.model.EdgeModel``)."""
    answers = model.predict(rows)
    return _scores("edge", tuple(a.version for a in answers), rows, schema, [a.to_dict() for a in answers])


def _float32(values: Sequence[Sequence[float]], classes: int) -> npt.NDArray[np.float32]:
    array = np.asarray(values, dtype=np.float64).reshape(-1, classes)
    narrowed = array.astype(np.float32)
    if not np.array_equal(narrowed.astype(np.float64), array, equal_nan=True):
        raise ValueError("outputs are not float32 values; a surface changed them on the way")
    return narrowed


def compare(a: Scores, b: Scores) -> Parity:
    """Row-by-row comparison on the float32 bit patterns, the predicted class and the version."""
    if a.ids != b.ids:
        raise ValueError(f"{a.surface} and {b.surface} scored different rows; compare the same rows in the same order")
    bits_a = a.outputs.view(np.uint32)
    bits_b = b.outputs.view(np.uint32)
    differs = (bits_a != bits_b).any(axis=1) | (a.predictions != b.predictions)
    diff = np.abs(a.outputs.astype(np.float64) - b.outputs.astype(np.float64))
    return Parity(
        surfaces=(a.surface, b.surface),
        rows=len(a.ids),
        mismatched_rows=int(differs.sum()),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        same_version=a.versions == b.versions,
    )


def online_explanations(
    service: _Poster, key: str, rows: Sequence[Mapping[str, Any]], *, top_k: int, chunk: int = 50
) -> list[dict[str, Any]]:
    """POST ``rows`` to the service's ``/explain`` in chunks: one explanation per row, in the rows' order."""
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), chunk):
        out += service.post("/explain", {"records": list(rows[start : start + chunk]), "top_k": top_k}, key=key)[
            "explanations"
        ]
    return out


def batch_explanations(
    output_dir: str | Path, rows: Sequence[Mapping[str, Any]], schema: Schema
) -> list[dict[str, Any]]:
    """The explanation columns of a ``ferry score --explain`` output, per row of ``rows`` (joined by id), in the
    JSON shape the other surfaces answer (without the standard errors, which batch does not write)."""
    from ferry.explain.contract import ATTRIBUTION_PREFIX, TOP_PREFIX

    if schema.id is None:
        raise ValueError("joining batch output back to rows needs the schema's id column")
    files = sorted((Path(output_dir) / "scores").glob("*.parquet"))
    table = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    table[schema.id] = table[schema.id].astype(str)
    indexed = table.set_index(schema.id).loc[list(_ids(rows, schema))]
    tops = sorted((c for c in indexed.columns if c.startswith(TOP_PREFIX)), key=lambda c: int(c[len(TOP_PREFIX) :]))
    out: list[dict[str, Any]] = []
    for _, row in indexed.iterrows():
        attributions = {f: float(row[ATTRIBUTION_PREFIX + f]) for f in schema.feature_names}
        out.append(
            {
                "class": _scalar(row["explained_class"]) if "explained_class" in indexed.columns else None,
                "value": float(row["explained_value"]),
                "base_value": float(row["base_value"]),
                "attributions": attributions,
                "top": [{"feature": row[c], "attribution": attributions[row[c]]} for c in tops],
            }
        )
    return out


def explanation_key(answer: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must be identical across surfaces: the class explained (as text), the value, the base value, every
    attribution (float64, in the answer's feature order) and the top features in order."""
    explained = answer["class"]
    return (
        None if explained is None else str(explained),
        float(answer["value"]),
        float(answer["base_value"]),
        tuple((name, float(v)) for name, v in answer["attributions"].items()),
        tuple(t["feature"] for t in answer["top"]),
    )
