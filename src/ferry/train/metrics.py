"""Holdout metrics for a binary classifier: the numbers the gate compares and the summary shows.

numpy and scikit-learn are imported by the functions that compute, so the CLI's tables read :data:`METRIC_NAMES`
without loading either.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["METRIC_NAMES", "calibration_table", "classification_metrics", "expected_calibration_error"]

#: The metrics every version records, in display order.
METRIC_NAMES = ("roc_auc", "f1", "precision", "recall", "brier", "ece", "log_loss", "positive_rate")


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, *, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted probability| over equal-width probability bins, weighted by bin size."""
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(float(y_true[mask].mean()) - float(prob[mask].mean()))
    return float(total)


def calibration_table(y_true: np.ndarray, prob: np.ndarray, *, bins: int = 10) -> list[dict[str, Any]]:
    """Per-bin counts, mean predicted probability and observed positive rate (a reliability diagram as rows)."""
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        rows.append(
            {
                "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                "rows": int(mask.sum()),
                "mean_predicted": float(prob[mask].mean()) if mask.any() else None,
                "observed_rate": float(y_true[mask].mean()) if mask.any() else None,
            }
        )
    return rows


def classification_metrics(y_true: np.ndarray, prob: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """Precision, recall, F1 (at ``threshold``), ROC AUC, Brier score, ECE, log loss and the predicted positive rate.

    ``prob`` is the probability of the positive class. ROC AUC is NaN when the holdout holds one class only.
    """
    import numpy as np
    from sklearn.metrics import brier_score_loss, f1_score, log_loss, precision_score, recall_score, roc_auc_score

    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else math.nan
    return {
        "roc_auc": auc,
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "positive_rate": float(pred.mean()),
        "rows": float(len(y)),
    }
