"""Holdout metrics per task: the numbers the gate compares and the summary shows, the primary metric of each task
with its direction, and the split-conformal interval of a regressor.

- binary: ROC AUC, F1, precision, recall, Brier, ECE, log loss, positive rate; primary ``roc_auc`` (higher is
  better; ``FERRY_GATE_PRIMARY_METRIC``).
- multiclass: per-class precision/recall/F1, macro and weighted F1, accuracy, log loss, one-vs-rest ROC AUC;
  primary ``macro_f1`` (higher; ``FERRY_GATE_MULTICLASS_PRIMARY_METRIC``).
- regression: RMSE, MAE, R², MAPE (when no target is 0), interval coverage and width; primary ``rmse`` (lower is
  better; ``FERRY_GATE_REGRESSION_PRIMARY_METRIC``).

numpy and scikit-learn are imported by the functions that compute, so the CLI's tables read :data:`METRIC_NAMES`
without loading either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ferry.settings import GateSettings

__all__ = [
    "LOWER_IS_BETTER",
    "METRIC_NAMES",
    "Interval",
    "calibration_table",
    "classification_metrics",
    "conformal_interval",
    "conformal_split",
    "expected_calibration_error",
    "multiclass_metrics",
    "primary_metric",
    "primary_value",
    "regression_metrics",
    "task_metrics",
]

#: The headline metrics a version may record, in display order (binary's first; each task records its own).
METRIC_NAMES = (
    "roc_auc",
    "f1",
    "precision",
    "recall",
    "brier",
    "ece",
    "log_loss",
    "positive_rate",
    "macro_f1",
    "weighted_f1",
    "accuracy",
    "roc_auc_ovr",
    "rmse",
    "mae",
    "r2",
    "mape",
    "interval_coverage",
    "interval_width",
)

#: Metrics where a smaller value is better; for every other one, larger is better.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mape", "log_loss", "brier", "ece"})


def primary_metric(task: str, settings: GateSettings) -> str:
    """The metric the gate compares for ``task`` (lower is better when it is in :data:`LOWER_IS_BETTER`)."""
    if task == "regression":
        return settings.regression_primary_metric
    if task == "multiclass":
        return settings.multiclass_primary_metric
    return settings.primary_metric


def task_metrics(task: str, y_true: np.ndarray, answers: np.ndarray, classes: Sequence[int | str]) -> dict[str, float]:
    """The holdout metrics of ``task`` from a model's answers: P(positive) (binary), a probability per class in
    ``classes`` order (multiclass), or values (regression)."""
    if task == "binary":
        return classification_metrics(y_true, answers)
    if task == "multiclass":
        return multiclass_metrics(y_true, answers, classes)
    return regression_metrics(y_true, answers)


def primary_value(
    task: str, metric: str, y_true: np.ndarray, answers: np.ndarray, classes: Sequence[int | str]
) -> float:
    """One primary metric (:func:`primary_metric`) of a model's answers, as :func:`task_metrics` computes it, without
    the others (permutation importance asks for it dozens of times)."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    if task == "regression" and metric in ("rmse", "mae"):
        error = np.asarray(y_true, dtype=np.float64) - np.asarray(answers, dtype=np.float64)
        return float(math.sqrt(np.mean(error**2))) if metric == "rmse" else float(np.mean(np.abs(error)))
    if task == "binary" and metric == "roc_auc":
        y = np.asarray(y_true).astype(int)
        return float(roc_auc_score(y, answers)) if len(np.unique(y)) == 2 else math.nan
    if task == "multiclass" and metric in ("macro_f1", "accuracy", "log_loss"):
        y = np.asarray(y_true).astype(int)
        p = np.asarray(answers, dtype=np.float64)
        p = p / p.sum(axis=1, keepdims=True)
        labels = list(range(len(classes)))
        if metric == "log_loss":
            return float(log_loss(y, p, labels=labels))
        pred = p.argmax(axis=1)
        if metric == "accuracy":
            return float(accuracy_score(y, pred))
        return float(f1_score(y, pred, labels=labels, average="macro", zero_division=0))
    return float(task_metrics(task, y_true, answers, classes)[metric])


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


def multiclass_metrics(y_true: np.ndarray, prob: np.ndarray, classes: Sequence[int | str]) -> dict[str, float]:
    """Per-class precision, recall and F1 (``f1[label]``), macro and weighted F1, accuracy, log loss and one-vs-rest
    ROC AUC (NaN when a class is absent from ``y_true``). ``prob`` has one column per class, in ``classes`` order."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support, roc_auc_score

    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)  # float32 answers sum to 1 only within rounding
    labels = list(range(len(classes)))
    pred = p.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    out: dict[str, float] = {
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, labels=labels, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "log_loss": float(log_loss(y, p, labels=labels)),
        "roc_auc_ovr": (
            float(roc_auc_score(y, p, multi_class="ovr", labels=labels))
            if len(np.unique(y)) == len(labels)
            else math.nan
        ),
        "rows": float(len(y)),
    }
    for i, label in enumerate(classes):
        out[f"precision[{label}]"] = float(precision[i])
        out[f"recall[{label}]"] = float(recall[i])
        out[f"f1[{label}]"] = float(f1[i])
    return out


@dataclass(frozen=True)
class Interval:
    """A split-conformal prediction interval: value ± ``half_width`` covers ``coverage`` of future rows.

    ``half_width`` is the conformal quantile of the absolute residuals on ``calibration_rows`` holdout rows; the
    coverage actually seen on the other ``check_rows`` holdout rows (never used to calibrate) is
    ``empirical_coverage``.
    """

    coverage: float
    half_width: float
    calibration_rows: int
    check_rows: int
    empirical_coverage: float
    seed: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def conformal_interval(y_true: np.ndarray, pred: np.ndarray, coverage: float, *, seed: int = 0) -> Interval:
    """Calibrate on a random half of the holdout, check coverage on the other half.

    The half width is the ceil((n+1)·coverage)-th smallest absolute residual of the n calibration rows (the
    split-conformal quantile, which covers at least ``coverage`` of exchangeable new rows); with too few rows for
    that rank, the largest residual is used.
    """
    import numpy as np

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    calibrate, check = conformal_split(len(y), seed)
    residuals = np.sort(np.abs(y[calibrate] - p[calibrate]))
    rank = min(len(residuals), math.ceil((len(residuals) + 1) * coverage))
    half = float(residuals[rank - 1])
    covered = np.abs(y[check] - p[check]) <= half if len(check) else np.zeros(0, dtype=bool)
    seen = float(covered.mean()) if len(check) else math.nan
    return Interval(coverage, half, len(calibrate), len(check), seen, seed)


def conformal_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Holdout positions that calibrate the interval, and the others, on which its coverage is checked."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, n // 2)
    return np.sort(order[:cut]), np.sort(order[cut:])


def regression_metrics(y_true: np.ndarray, pred: np.ndarray, interval: Interval | None = None) -> dict[str, float]:
    """RMSE, MAE, R², MAPE (only when no true value is 0) and, with an interval, its coverage and width."""
    import numpy as np
    from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, mean_squared_error, r2_score

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    out = {
        "rmse": float(math.sqrt(mean_squared_error(y, p))),
        "mae": float(mean_absolute_error(y, p)),
        "r2": float(r2_score(y, p)) if len(y) > 1 else math.nan,
        "rows": float(len(y)),
    }
    if len(y) and not np.any(y == 0):
        out["mape"] = float(mean_absolute_percentage_error(y, p))
    if interval is not None:
        out["interval_coverage"] = interval.empirical_coverage
        out["interval_width"] = 2 * interval.half_width
    return out
