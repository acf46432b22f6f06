"""The prediction columns per task: what the online prediction log, a batch run's kept sample and a version's
reference carry besides the features, and which of them prediction drift compares.

| task | columns | prediction drift over |
|---|---|---|
| binary | ``prediction``, ``p_positive`` (P of the second class), ``prob_<class>`` | ``p_positive`` |
| multiclass | ``prediction``, ``prob_<class>`` per class in ``target_classes`` order | ``prediction`` (classes) |
| regression | ``value``, ``lower``, ``upper`` (the conformal interval) | ``value`` |

``prediction`` is the predicted class as text.

The online service writes the same columns in its prediction log; :func:`answer_columns` makes them from an ONNX
answer (:mod:`ferry.scoring`'s output contract) for the batch sample and the reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ferry.errors import DataError
from ferry.schema import Schema

if TYPE_CHECKING:  # ferry.scoring loads onnxruntime: imported where an answer is made
    from ferry.scoring import Scores, ValueScores

__all__ = [
    "CLASS",
    "PREDICTION",
    "VALUE",
    "answer_columns",
    "drift_columns",
    "prediction_columns",
    "probability_column",
    "require_columns",
]

PREDICTION = "p_positive"
"""The column holding a binary model's positive-class probability, in logs, batch samples and the reference."""

CLASS = "prediction"
"""The column holding a classifier's predicted class, as text."""

VALUE = "value"
"""The column holding a regressor's value (``lower`` and ``upper`` hold its interval)."""


def probability_column(label: int | str) -> str:
    """The column of one class's probability (``prob_<class>``, as the batch output names it)."""
    return f"prob_{label}"


def prediction_columns(schema: Schema) -> list[str]:
    """The prediction columns a row of ``schema``'s task carries (the table above)."""
    if schema.kind == "regression":
        return [VALUE, "lower", "upper"]
    probs = [probability_column(c) for c in schema.target_classes]
    return [CLASS, PREDICTION, *probs] if schema.kind == "binary" else [CLASS, *probs]


def drift_columns(schema: Schema) -> tuple[list[str], list[str]]:
    """The columns prediction drift compares, as (numeric, categorical)."""
    if schema.kind == "binary":
        return [PREDICTION], []
    if schema.kind == "multiclass":
        return [], [CLASS]
    return [VALUE], []


def answer_columns(found: Scores | ValueScores, schema: Schema) -> dict[str, Any]:
    """The prediction columns of ONNX answers, named and typed as the online prediction log writes them."""
    from ferry.scoring import ValueScores

    if isinstance(found, ValueScores):
        return {
            VALUE: found.values.astype(np.float64),
            "lower": found.lower.astype(np.float64),
            "upper": found.upper.astype(np.float64),
        }
    classes = [str(c) for c in schema.target_classes]
    prob = np.asarray(found.probabilities, dtype=np.float64)
    out: dict[str, Any] = {CLASS: np.asarray([classes[int(i)] for i in found.labels], dtype=object)}
    if schema.kind == "binary":
        out[PREDICTION] = prob[:, -1]
    for i, c in enumerate(schema.target_classes):
        out[probability_column(c)] = prob[:, i]
    return out


def require_columns(frame: pd.DataFrame, schema: Schema, what: str) -> None:
    """DataError naming the prediction columns ``frame`` lacks for ``schema``'s task (logs of another task); a binary
    log needs only ``prediction`` and ``p_positive`` (logs written before ``prob_<class>`` stay readable)."""
    needed = [CLASS, PREDICTION] if schema.kind == "binary" else prediction_columns(schema)
    lacking = [c for c in needed if c not in frame.columns]
    if lacking:
        raise DataError(
            f"{what} lack the {schema.kind} prediction column(s) {lacking}; they were written for a model of "
            "another task, or before the log carried them"
        )
