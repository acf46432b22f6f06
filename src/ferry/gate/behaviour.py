"""Behavioural tests of a model, run on the artifact that ships (``model.onnx``), not on scikit-learn.

- **Direction**: for each feature the schema declares monotone (``direction: increasing|decreasing``), raising it
  by one standard deviation should move the positive-class score the declared way (or leave it) on most rows.
- **Invariance**: a row's score does not depend on the batch it is scored in (alone, or shuffled among others).

Each returns plain numbers; the gate compares them with thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ferry.data import to_onnx_inputs
from ferry.schema import Schema
from ferry.scoring import OnnxScorer

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
        before, after = positive_scores(scorer, rows, schema), positive_scores(scorer, bumped, schema)
        delta = after - before
        ok = delta >= -1e-7 if f.direction == "increasing" else delta <= 1e-7
        results.append(
            BehaviourResult(
                name=f"behaviour.direction[{f.name}]",
                observed=float(ok.mean()),
                rows=len(rows),
                detail=f"{f.name} +{step:.3g}: score should not {'fall' if f.direction == 'increasing' else 'rise'}",
            )
        )
    return results


def invariance_test(
    scorer: OnnxScorer, frame: pd.DataFrame, schema: Schema, *, sample: int = 200, seed: int = 0
) -> BehaviourResult:
    """Largest change of a row's score between scoring it alone, in a batch, and in a shuffled batch."""
    rows = frame.sample(n=min(sample, len(frame)), random_state=seed) if len(frame) else frame
    batch = positive_scores(scorer, rows, schema)
    order = np.random.default_rng(seed).permutation(len(rows))
    shuffled = np.empty_like(batch)
    shuffled[order] = positive_scores(scorer, rows.iloc[order], schema)
    alone = np.array([positive_scores(scorer, rows.iloc[[i]], schema)[0] for i in range(min(len(rows), 50))])
    diffs = [np.abs(batch - shuffled).max(initial=0.0), np.abs(batch[: len(alone)] - alone).max(initial=0.0)]
    return BehaviourResult(
        name="behaviour.batch_invariance",
        observed=float(max(diffs)),
        rows=len(rows),
        detail="score of a row alone vs in a batch vs in a shuffled batch",
    )
