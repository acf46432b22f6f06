"""Behavioural tests of a model, run on the artifact that ships (``model.onnx``), not on scikit-learn.

- **Direction**: for each feature the schema declares monotone (``direction: increasing|decreasing``), raising it
  by one standard deviation should move the score the declared way (or leave it) on most rows. The score is the
  positive class's probability (binary), the probability of the feature's ``direction_class`` (multiclass) or the
  value (regression).
- **Invariance**: a row's answer does not depend on the batch it is scored in (alone, or shuffled among others):
  every class probability of a classifier, the value of a regressor.

Each returns plain numbers; the gate compares them with thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ferry.data import to_onnx_inputs
from ferry.schema import Feature, Schema
from ferry.scoring import OnnxScorer, Scores

__all__ = ["BehaviourResult", "direction_tests", "invariance_test", "positive_scores"]


@dataclass(frozen=True)
class BehaviourResult:
    name: str
    observed: float
    rows: int
    detail: str


def positive_scores(scorer: OnnxScorer, frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """P(positive class) for each row of a validated (or model-ready) frame, from the ONNX model."""
    return scorer.score(to_onnx_inputs(frame, schema)).probabilities[:, 1].astype(np.float64)


def _direction_scores(scorer: OnnxScorer, frame: pd.DataFrame, schema: Schema, feature: Feature) -> np.ndarray:
    """The score a feature's direction is about (see the module docstring)."""
    if schema.kind == "regression":
        return scorer.primary(to_onnx_inputs(frame, schema))
    label = feature.direction_class if feature.direction_class is not None else schema.positive_class
    return scorer.primary(to_onnx_inputs(frame, schema), class_index=schema.class_index(label))


def _answers(scorer: OnnxScorer, frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Every number of each row's answer, (n, m) float64: binary P(positive), a probability per class, the value."""
    if schema.kind == "binary":
        return positive_scores(scorer, frame, schema)[:, None]
    found = scorer.answer(to_onnx_inputs(frame, schema))
    if isinstance(found, Scores):
        return found.probabilities.astype(np.float64)
    return found.values.astype(np.float64)[:, None]


def direction_tests(
    scorer: OnnxScorer, frame: pd.DataFrame, schema: Schema, *, sample: int = 500, seed: int = 0
) -> list[BehaviourResult]:
    """Share of rows whose score moves the declared way when a monotone feature grows by one std."""
    results = []
    for f in schema.features:
        if f.direction is None:
            continue
        col = frame[f.name].astype(np.float64)
        rows = frame[col.notna()]
        if len(rows) > sample:
            rows = rows.sample(n=sample, random_state=seed)
        if rows.empty:
            continue
        step = float(col.std()) or 1.0
        bumped = rows.copy()
        new = rows[f.name].astype(np.float64) + step
        if f.max is not None:
            new = new.clip(upper=f.max)
        bumped[f.name] = new.astype(np.float32)
        before, after = _direction_scores(scorer, rows, schema, f), _direction_scores(scorer, bumped, schema, f)
        delta = after - before
        # float32 noise of the score's own size is no movement (probabilities are at most 1; values any size)
        noise = 1e-7 if schema.is_classifier else 1e-6 * max(float(np.abs(before).max(initial=0.0)), 1.0)
        ok = delta >= -noise if f.direction == "increasing" else delta <= noise
        about = f" of P({f.direction_class})" if schema.kind == "multiclass" else ""
        way = "fall" if f.direction == "increasing" else "rise"
        results.append(
            BehaviourResult(
                name=f"behaviour.direction[{f.name}]",
                observed=float(ok.mean()),
                rows=len(rows),
                detail=f"{f.name} +{step:.3g}: score{about} should not {way}",
            )
        )
    return results


def invariance_test(
    scorer: OnnxScorer, frame: pd.DataFrame, schema: Schema, *, sample: int = 200, seed: int = 0
) -> BehaviourResult:
    """Largest change of a row's score between scoring it alone, in a batch, and in a shuffled batch."""
    rows = frame.sample(n=min(sample, len(frame)), random_state=seed) if len(frame) else frame
    batch = _answers(scorer, rows, schema)
    order = np.random.default_rng(seed).permutation(len(rows))
    shuffled = np.empty_like(batch)
    shuffled[order] = _answers(scorer, rows.iloc[order], schema)
    alone = np.array([_answers(scorer, rows.iloc[[i]], schema)[0] for i in range(min(len(rows), 50))])
    alone = alone.reshape(-1, batch.shape[1])
    diffs = [np.abs(batch - shuffled).max(initial=0.0), np.abs(batch[: len(alone)] - alone).max(initial=0.0)]
    detail = "score of a row alone vs in a batch vs in a shuffled batch"
    scale = 1.0
    if schema.kind == "regression":  # float32 values carry about seven digits of their own size
        scale = max(float(np.abs(batch).max(initial=0.0)), 1.0)
        detail += ", relative to the largest value"
    return BehaviourResult(
        name="behaviour.batch_invariance", observed=float(max(diffs)) / scale, rows=len(rows), detail=detail
    )
