"""Quality from late labels, per task: labels checked against the schema, joined with logged predictions by
``prediction_id``, and each version's metrics on them.

| task | labels | metrics |
|---|---|---|
| binary | one of the two classes | labelled, accuracy, ROC AUC (with both classes present) |
| multiclass | one of the declared classes | labelled, accuracy, macro F1, log loss (one-vs-rest ROC AUC) |
| regression | a finite number within ``target_min``/``target_max`` | labelled, RMSE, MAE, the interval's coverage |

A regressor's interval is checked again here: :func:`coverage_findings` names each version whose empirical
coverage on the labels falls short of the coverage it declares by more than ``coverage_tolerance`` (or, with few
labels, by more than two binomial standard errors, when that is more: fewer labels vary more by chance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ferry.errors import DataError
from ferry.monitor.answers import CLASS, PREDICTION, VALUE, probability_column, require_columns
from ferry.schema import Schema

__all__ = ["check_labels", "coverage_bound", "coverage_findings", "label_metrics", "quality_by_version"]


def _as_class_text(value: object) -> str | None:
    """A label as the class text it stands for (1.0 read from a file is the class "1"); None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_labels(labels: pd.DataFrame, schema: Schema, source: str, *, drop: bool = False) -> pd.DataFrame:
    """``prediction_id`` (text) and ``label`` as the task needs it: a declared class as text, or a float.

    A label that is missing, outside the declared classes, not a number or not finite (regression), or outside
    ``target_min``/``target_max`` is a DataError naming ``source``, the column, the first bad row and what to do;
    with ``drop``, such rows are left out instead (their count is ``DataFrame.attrs["refused"]``).
    """
    ids = labels["prediction_id"].astype(str)
    problems: list[tuple[np.ndarray, str, str]] = []
    if schema.kind == "regression":
        raw = labels["label"]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        spelled = raw.astype(str).str.strip().str.lower().isin(["", "nan", "inf", "-inf", "infinity", "-infinity"])
        not_number = np.isnan(values) & ~spelled.to_numpy() & raw.notna().to_numpy()
        low = -math.inf if schema.target_min is None else schema.target_min
        high = math.inf if schema.target_max is None else schema.target_max
        with np.errstate(invalid="ignore"):
            outside = (values < low) | (values > high)
        problems = [
            (not_number, "are not numbers", "a regression label is the true value, a number"),
            (
                ~np.isfinite(values) & ~not_number,
                "are missing, NaN or infinite",
                "send the true value, or leave the row out",
            ),
            (outside, f"are outside the declared range [{low:g}, {high:g}]", "fix the labels"),
        ]
        out = pd.DataFrame({"prediction_id": ids, "label": values})
    else:
        classes = [str(c) for c in schema.target_classes]
        text = [_as_class_text(v) for v in labels["label"]]
        missing = np.array([t is None for t in text], dtype=bool)
        problems = [
            (missing, "are missing", "send the true class, or leave the row out"),
            (
                np.array([t not in classes for t in text], dtype=bool) & ~missing,
                f"are not among the declared classes {classes}",
                "send one of the declared classes",
            ),
        ]
        out = pd.DataFrame({"prediction_id": ids, "label": pd.Series(text, index=labels.index, dtype=object)})
    bad = np.zeros(len(labels), dtype=bool)
    for rows, why, fix in problems:
        if rows.any() and not drop:
            first = labels.iloc[int(np.flatnonzero(rows)[0])]
            value = first["label"].item() if isinstance(first["label"], np.generic) else first["label"]
            raise DataError(
                f"{source}: column label holds {int(rows.sum())} value(s) that {why} (first: {value!r} for "
                f"prediction_id {str(first['prediction_id'])!r}); {fix}"
            )
        bad |= rows
    kept = out[~bad].reset_index(drop=True)
    kept.attrs["refused"] = int(bad.sum())
    return kept


def _probabilities(joined: pd.DataFrame, schema: Schema) -> np.ndarray:
    p = joined[[probability_column(c) for c in schema.target_classes]].to_numpy(dtype=np.float64)
    p = np.clip(p, 1e-15, 1.0)
    normalised: np.ndarray = p / p.sum(axis=1, keepdims=True)  # float32 answers sum to 1 only within rounding
    return normalised


def label_metrics(joined: pd.DataFrame, schema: Schema) -> dict[str, float]:
    """The task's metrics (the table above) of logged predictions joined with checked labels."""
    from sklearn.metrics import f1_score, log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

    out: dict[str, float] = {"labelled": float(len(joined))}
    if joined.empty:
        return out
    if schema.kind == "regression":
        y = joined["label"].to_numpy(dtype=np.float64)
        value = joined[VALUE].to_numpy(dtype=np.float64)
        out["rmse"] = float(math.sqrt(mean_squared_error(y, value)))
        out["mae"] = float(mean_absolute_error(y, value))
        if {"lower", "upper"} <= set(joined.columns):
            inside = (joined["lower"].to_numpy(dtype=np.float64) <= y) & (y <= joined["upper"].to_numpy(np.float64))
            out["coverage"] = float(inside.mean())
        return out
    truth = joined["label"].astype(str).to_numpy()
    pred = joined[CLASS].astype(str).to_numpy()
    out["accuracy"] = float((pred == truth).mean())
    if schema.kind == "binary":
        positive = str(schema.target_classes[-1])
        if len(set(truth.tolist())) == 2:
            out["roc_auc"] = float(roc_auc_score(truth == positive, joined[PREDICTION].to_numpy(dtype=np.float64)))
        return out
    classes = [str(c) for c in schema.target_classes]
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[t] for t in truth])
    p = np.array([index.get(t, -1) for t in pred])
    seen = sorted(set(y.tolist()) | set(p.tolist()) - {-1})
    out["macro_f1"] = float(f1_score(y, p, labels=seen, average="macro", zero_division=0))
    prob = _probabilities(joined, schema)
    out["log_loss"] = float(log_loss(y, prob, labels=list(range(len(classes)))))
    if len(set(y.tolist())) == len(classes):  # one-vs-rest ROC AUC needs every class among the labels
        out["roc_auc_ovr"] = float(roc_auc_score(y, prob, multi_class="ovr", labels=list(range(len(classes)))))
    return out


def quality_by_version(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    schema: Schema,
    *,
    declared: Mapping[str, float] | None = None,
    coverage_tolerance: float = 0.05,
) -> dict[str, dict[str, float]]:
    """Each version's quality on the labelled predictions it made (a shadow version's too, as ``<id> (shadow)``).

    ``labels`` are checked first (:func:`check_labels`); ``declared``: the interval coverage each regression version
    declares, added as ``declared_coverage`` with the ``coverage_floor`` it is held to (:func:`coverage_bound` with
    ``coverage_tolerance``).
    """
    if predictions.empty or labels.empty:
        return {}
    checked = check_labels(labels, schema, "labels")
    require_columns(predictions, schema, "the logged predictions")
    joined = predictions.merge(checked[["prediction_id", "label"]], on="prediction_id", how="inner")
    out: dict[str, dict[str, float]] = {}
    role = joined["role"] if "role" in joined.columns else pd.Series("answer", index=joined.index)
    for (version, r), part in joined.groupby([joined["version"], role]):
        found = label_metrics(part, schema)
        if declared and str(version) in declared and "coverage" in found:
            found["declared_coverage"] = float(declared[str(version)])
            found["coverage_floor"] = coverage_bound(
                found["declared_coverage"], int(found["labelled"]), coverage_tolerance
            )
        out[f"{version} (shadow)" if r == "shadow" else str(version)] = found
    return out


def coverage_bound(declared: float, labelled: int, tolerance: float) -> float:
    """The least empirical coverage that does not count as short: ``declared`` less the larger of ``tolerance`` and
    two binomial standard errors of ``labelled`` labels."""
    chance = 2 * math.sqrt(declared * (1 - declared) / max(labelled, 1))
    return round(declared - max(tolerance, chance), 4)


def coverage_findings(quality: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One line per version whose interval covered fewer labels than its ``coverage_floor`` (the module docstring)."""
    out = []
    for version, q in quality.items():
        if "coverage" in q and "coverage_floor" in q and q["coverage"] < q["coverage_floor"]:
            out.append(
                f"{version}: its {q['declared_coverage']:g} interval covered {q['coverage']:.1%} of "
                f"{int(q['labelled'])} labelled answers, below the floor {q['coverage_floor']:.1%}; the intervals "
                "are too narrow for today's data: retrain to recalibrate them"
            )
    return out
