"""Convert the fitted pipeline to ONNX with skl2onnx, and check that ONNX scores the holdout like scikit-learn.

``model.onnx`` has one input per feature, named after the column, shape ``(None, 1)``: ``tensor(float)`` for
numeric columns and ``tensor(string)`` for categorical ones. Its outputs follow the task, as
:mod:`ferry.scoring` spells out: ``label`` (int64) and ``probabilities`` (float32, one column per class; binary
``[P(negative), P(positive)]``) for a classifier; ``value``, ``lower`` and ``upper`` (float32) for a regressor,
whose split-conformal half width is built into the graph (and recorded in the ``ferry.interval`` metadata).

Parity per task: a classifier's probabilities (binary: the positive one; multiclass: every class) within
``max_abs_diff`` and every label equal; a regressor's values within ``max_rel_diff`` times the target's scale (the
holdout's standard deviation), since float32 carries about seven digits of whatever magnitude the target has.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ferry.data import to_onnx_inputs
from ferry.errors import ExportError
from ferry.schema import Schema
from ferry.scoring import OnnxScorer, ValueScores
from ferry.train.metrics import Interval

__all__ = [
    "ALTERNATIVES",
    "TARGET_OPSET",
    "ParityResult",
    "align_thresholds_to_float32",
    "parity",
    "to_onnx",
    "unconvertible_step",
]

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


def to_onnx(pipeline: Pipeline, schema: Schema, *, interval: Interval | None = None) -> bytes:
    """Serialized ONNX model of the pipeline, with the model name, schema (and a regressor's interval) recorded in
    its metadata. A regressor needs its ``interval``. A step skl2onnx cannot convert is named in the ExportError."""
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    if not schema.is_classifier and interval is None:
        raise ExportError("a regression model is exported with its conformal interval; evaluate it first")
    unsupported = unconvertible_step(pipeline)
    if unsupported is not None:
        raise ExportError(unsupported)
    initial_types: list[tuple[str, Any]] = [
        (f.name, FloatTensorType([None, 1]) if f.type == "numeric" else StringTensorType([None, 1]))
        for f in schema.features
    ]
    options = {id(pipeline.steps[-1][1]): {"zipmap": False}} if schema.is_classifier else None
    try:
        with warnings.catch_warnings():
            # skl2onnx passes Python bools where onnx expects ints; harmless, and not ours to fix
            warnings.filterwarnings("ignore", message="Field onnx.AttributeProto", category=DeprecationWarning)
            model = skl_to_onnx(
                pipeline, initial_types=initial_types, options=options, target_opset=TARGET_OPSET, naming="ferry_"
            )
    except Exception as exc:  # skl2onnx raises many unrelated types for unsupported models
        raise ExportError(f"skl2onnx could not convert the pipeline: {type(exc).__name__}: {exc}") from exc
    outputs = [o.name for o in model.graph.output]
    if schema.is_classifier and outputs != ["label", "probabilities"]:
        raise ExportError(f"expected ONNX outputs ['label', 'probabilities'], got {outputs}")
    model.producer_name = "ferry"
    meta = model.metadata_props.add()
    meta.key, meta.value = "ferry.model", schema.name
    meta = model.metadata_props.add()
    meta.key, meta.value = "ferry.schema", schema.dump_json()
    if interval is not None:
        if len(outputs) != 1:
            raise ExportError(f"expected one ONNX output of a regressor, got {outputs}")
        _add_interval(model, outputs[0], interval.half_width)
        meta = model.metadata_props.add()
        meta.key, meta.value = "ferry.interval", json.dumps(interval.to_dict(), sort_keys=True)
    return bytes(model.SerializeToString())


def _add_interval(model: Any, output: str, half_width: float) -> None:
    """Replace a regressor's one output by ``value``, ``lower`` and ``upper`` = value ∓ half width (float32)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.array([half_width], dtype=np.float32), "ferry_half_width"))
    graph.node.extend(
        [
            helper.make_node("Identity", [output], ["value"], name="ferry_value"),
            helper.make_node("Sub", [output, "ferry_half_width"], ["lower"], name="ferry_lower"),
            helper.make_node("Add", [output, "ferry_half_width"], ["upper"], name="ferry_upper"),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]) for name in ("value", "lower", "upper")]
    )


#: What to use instead of a step skl2onnx cannot convert (by class name), for the refusal's message.
ALTERNATIVES = {
    "FunctionTransformer": "a built-in transformer (StandardScaler, OneHotEncoder, SimpleImputer, ...) or "
    "compute the column before the pipeline",
    "TransformedTargetRegressor": "transform the target before fitting, or a regressor that needs no target transform",
    "KernelRidge": "Ridge, or an SVR with the same kernel",
    "NearestCentroid": "KNeighborsClassifier or LogisticRegression",
    "SplineTransformer": "PolynomialFeatures or KBinsDiscretizer",
    "Nystroem": "PCA, or an SVC/SVR with the kernel itself",
    "IsotonicRegression": "HistGradientBoostingRegressor with a monotonic constraint",
    "DummyClassifier": "LogisticRegression",
    "DummyRegressor": "Ridge",
}
_DEFAULT_ALTERNATIVE = (
    "HistGradientBoosting*, RandomForest*, LogisticRegression or Ridge, with SimpleImputer, StandardScaler and "
    "OneHotEncoder"
)


def _walk(step: Any, path: str) -> list[tuple[str, Any]]:
    """Every estimator inside ``step`` with its path (``pre/num/impute``): pipelines and column transformers open."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion

    if isinstance(step, Pipeline):
        return [found for name, sub in step.steps for found in _walk(sub, f"{path}/{name}" if path else name)]
    if isinstance(step, ColumnTransformer):
        parts = step.transformers_ if hasattr(step, "transformers_") else step.transformers
        out = [(path, step)]
        for name, sub, _ in parts:
            if isinstance(sub, str):  # "drop" / "passthrough"
                continue
            out += _walk(sub, f"{path}/{name}")
        return out
    if isinstance(step, FeatureUnion):
        return [(path, step)] + [found for name, sub in step.transformer_list for found in _walk(sub, f"{path}/{name}")]
    return [(path, step)]


def unconvertible_step(pipeline: Pipeline) -> str | None:
    """A one-line refusal naming the first step skl2onnx has no converter for and what to use instead, or None."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from sklearn.preprocessing import FunctionTransformer

    for path, step in _walk(pipeline, ""):
        name = type(step).__name__
        custom = isinstance(step, FunctionTransformer) and step.func is not None  # only the identity converts
        if type(step) not in sklearn_operator_name_map or custom:
            instead = ALTERNATIVES.get(name, _DEFAULT_ALTERNATIVE)
            return (
                f"skl2onnx could not convert the pipeline: step {path!r} ({name}) has no ONNX converter; use "
                f"{instead} instead"
            )
    return None


def parity(
    pipeline: Pipeline,
    onnx_model: bytes,
    frame: pd.DataFrame,
    schema: Schema,
    *,
    max_abs_diff: float,
    scale: float = 1.0,
) -> ParityResult:
    """Score every row of ``frame`` with both and compare them per task (see the module docstring). For a
    regressor, ``max_abs_diff`` is relative: the values' differences are divided by ``scale`` first."""
    answer = OnnxScorer(onnx_model).answer(to_onnx_inputs(frame, schema))
    if isinstance(answer, ValueScores):
        sk_value = np.asarray(pipeline.predict(frame), dtype=np.float64).reshape(-1)
        rel = np.abs(sk_value - answer.values.astype(np.float64)) / max(scale, 1e-12)
        return _result(rel, 1.0, max_abs_diff, len(frame))
    sk_all = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
    sk_label = pipeline.predict(frame)
    if schema.kind == "multiclass":
        diff = np.abs(sk_all - answer.probabilities.astype(np.float64)).max(axis=1, initial=0.0)
    else:
        diff = np.abs(sk_all[:, 1] - answer.probabilities[:, 1].astype(np.float64))
    agreement = float(np.mean(np.asarray(sk_label).astype(np.int64) == answer.labels.astype(np.int64)))
    return _result(diff, agreement, max_abs_diff, len(frame))


def _result(diff: np.ndarray, agreement: float, max_allowed: float, rows: int) -> ParityResult:
    worst = int(np.nanargmax(diff)) if len(diff) and not np.isnan(diff).all() else None
    max_diff = float(np.nanmax(diff)) if worst is not None else 0.0
    if np.isnan(diff).any():  # NaN on one side only is the worst possible disagreement
        max_diff = float("inf")
    return ParityResult(
        rows=rows,
        max_abs_diff=max_diff,
        label_agreement=agreement,
        max_allowed=max_allowed,
        passed=bool(max_diff <= max_allowed and agreement == 1.0),
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
    for tree in np.ravel(np.asarray(getattr(est, "estimators_", []), dtype=object)):  # forests, boosted trees
        if not hasattr(getattr(tree, "tree_", None), "__getstate__"):
            continue
        state = tree.tree_.__getstate__()
        nodes = state["nodes"]
        split = nodes["left_child"] != -1
        new = _floor_to_float32(nodes["threshold"][split])
        moved += int(np.sum(new != nodes["threshold"][split]))
        nodes["threshold"][split] = new
        tree.tree_.__setstate__(state)
    return moved
