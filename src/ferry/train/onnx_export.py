"""Convert the fitted pipeline to ONNX with skl2onnx, and check that ONNX scores the holdout like scikit-learn.

``model.onnx`` has one input per feature, named after the column, shape ``(None, 1)``: ``tensor(float)`` for
numeric columns and ``tensor(string)`` for categorical ones. Its outputs are ``label`` (int64) and
``probabilities`` (float32, ``[P(negative), P(positive)]``).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ferry.data import to_onnx_inputs
from ferry.errors import ExportError
from ferry.schema import Schema
from ferry.scoring import OnnxScorer

__all__ = ["TARGET_OPSET", "ParityResult", "align_thresholds_to_float32", "parity", "to_onnx"]

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


@dataclass(frozen=True)
class ParityResult:
    """How far the ONNX model's scores are from scikit-learn's on the same rows."""

    rows: int
    max_abs_diff: float
    label_agreement: float
    max_allowed: float
    passed: bool
    worst_row: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_onnx(pipeline: Pipeline, schema: Schema) -> bytes:
    """Serialized ONNX model of the pipeline, with the model name and schema recorded in its metadata."""
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types: list[tuple[str, Any]] = [
        (f.name, FloatTensorType([None, 1]) if f.type == "numeric" else StringTensorType([None, 1]))
        for f in schema.features
    ]
    try:
        with warnings.catch_warnings():
            # skl2onnx passes Python bools where onnx expects ints; harmless, and not ours to fix
            warnings.filterwarnings("ignore", message="Field onnx.AttributeProto", category=DeprecationWarning)
            model = skl_to_onnx(
                pipeline,
                initial_types=initial_types,
                options={id(pipeline.steps[-1][1]): {"zipmap": False}},
                target_opset=TARGET_OPSET,
                naming="ferry_",
            )
    except Exception as exc:  # skl2onnx raises many unrelated types for unsupported models
        raise ExportError(f"skl2onnx could not convert the pipeline: {type(exc).__name__}: {exc}") from exc
    outputs = [o.name for o in model.graph.output]
    if outputs != ["label", "probabilities"]:
        raise ExportError(f"expected ONNX outputs ['label', 'probabilities'], got {outputs}")
    model.producer_name = "ferry"
    meta = model.metadata_props.add()
    meta.key, meta.value = "ferry.model", schema.name
    meta = model.metadata_props.add()
    meta.key, meta.value = "ferry.schema", schema.dump_json()
    return bytes(model.SerializeToString())


def parity(
    pipeline: Pipeline, onnx_model: bytes, frame: pd.DataFrame, schema: Schema, *, max_abs_diff: float
) -> ParityResult:
    """Score every row of ``frame`` with both, and compare positive-class probabilities and labels."""
    sk_prob = pipeline.predict_proba(frame)[:, 1]
    sk_label = pipeline.predict(frame)
    scores = OnnxScorer(onnx_model).score(to_onnx_inputs(frame, schema))
    ox_prob = scores.probabilities[:, 1].astype(np.float64)
    diff = np.abs(sk_prob - ox_prob)
    worst = int(np.nanargmax(diff)) if len(diff) and not np.isnan(diff).all() else None
    max_diff = float(np.nanmax(diff)) if worst is not None else 0.0
    if np.isnan(diff).any():  # NaN on one side only is the worst possible disagreement
        max_diff = float("inf")
    agreement = float(np.mean(np.asarray(sk_label).astype(np.int64) == scores.labels.astype(np.int64)))
    return ParityResult(
        rows=len(frame),
        max_abs_diff=max_diff,
        label_agreement=agreement,
        max_allowed=max_abs_diff,
        passed=bool(max_diff <= max_abs_diff and agreement == 1.0),
        worst_row=worst,
    )


def _floor_to_float32(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 value <= each threshold: for any float32 x, ``x <= t`` iff ``x <= floor32(t)``."""
    t32 = thresholds.astype(np.float32)
    up = t32.astype(np.float64) > thresholds
    t32[up] = np.nextafter(t32[up], np.float32(-np.inf))
    return t32.astype(np.float64)


def align_thresholds_to_float32(pipeline: Pipeline) -> int:
    """Make tree split thresholds exactly representable in float32, without changing any float32 decision.

    scikit-learn stores thresholds in float64, ONNX tree ensembles in float32. A threshold that rounds *up* to a
    float32 value equal to an input flips that input's branch in ONNX (seen as |dprob| ~ 0.02 on the demo data).
    Replacing each threshold by the largest float32 not above it keeps every decision on float32 inputs (which
    is what ferry feeds both scikit-learn and ONNX) and removes the disagreement. Returns how many moved.
    """
    est = pipeline.steps[-1][1]
    moved = 0
    for predictors in getattr(est, "_predictors", []):  # HistGradientBoosting
        for predictor in predictors:
            nodes = predictor.nodes
            split = nodes["is_leaf"] == 0
            new = _floor_to_float32(nodes["num_threshold"][split])
            moved += int(np.sum(new != nodes["num_threshold"][split]))
            nodes["num_threshold"][split] = new
    for tree in getattr(est, "estimators_", []):  # forests
        state = tree.tree_.__getstate__()
        nodes = state["nodes"]
        split = nodes["left_child"] != -1
        new = _floor_to_float32(nodes["threshold"][split])
        moved += int(np.sum(new != nodes["threshold"][split]))
        nodes["threshold"][split] = new
        tree.tree_.__setstate__(state)
    return moved
