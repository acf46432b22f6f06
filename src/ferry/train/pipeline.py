"""Split the data and fit the candidate pipeline (preprocessing + estimator) with a small cross-validated search.

The pipeline consumes exactly what ``model.onnx`` consumes: numeric columns as float32 values (NaN for missing)
and categorical columns as strings ("" for missing). :func:`model_frame` builds that frame, so scikit-learn and
ONNX see the same numbers and the parity check compares like with like.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from ferry.data import to_onnx_inputs
from ferry.errors import TrainingError
from ferry.schema import Schema
from ferry.settings import TrainSettings
from ferry.train.estimators import EstimatorSpec, resolve_estimator
from ferry.train.onnx_export import align_thresholds_to_float32

__all__ = ["CV_SCORING", "Split", "TrainResult", "build_pipeline", "check_class_rows", "fit", "model_frame", "split"]


@dataclass(frozen=True)
class Split:
    """Row positions of the training part and the holdout, and how the split was made."""

    train_index: np.ndarray
    holdout_index: np.ndarray
    method: str
    cutoff: str | None = None


@dataclass(frozen=True)
class TrainResult:
    pipeline: Pipeline
    best_params: dict[str, Any]
    cv_score: float
    cv_results: list[dict[str, Any]] = field(default_factory=list)
    fit_seconds: float = 0.0
    cv_metric: str = "roc_auc"


def model_frame(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The feature columns in the exact form ``model.onnx`` takes (float32 numerics, "" for missing categories)."""
    return pd.DataFrame({name: a[:, 0] for name, a in to_onnx_inputs(df, schema).items()}, index=df.index)


def split(df: pd.DataFrame, schema: Schema, settings: TrainSettings) -> Split:
    """Hold out the latest rows when the schema names a timestamp, else a random share (stratified by class for a
    classifier)."""
    n = len(df)
    n_holdout = max(1, round(n * settings.holdout_fraction))
    rng = np.random.default_rng(settings.seed)
    if schema.timestamp is not None:
        order = np.argsort(df[schema.timestamp].to_numpy(), kind="stable")
        train_idx, hold_idx = order[: n - n_holdout], order[n - n_holdout :]
        cutoff = str(df[schema.timestamp].iloc[hold_idx[0]])
        result = Split(np.sort(train_idx), np.sort(hold_idx), "time", cutoff)
    elif not schema.is_classifier:
        hold_idx = np.sort(rng.permutation(n)[:n_holdout])
        result = Split(np.setdiff1d(np.arange(n), hold_idx), hold_idx, "random")
    else:
        y = df[schema.target].to_numpy()
        hold: list[np.ndarray] = []
        for cls in np.unique(y):
            members = np.flatnonzero(y == cls)
            rng.shuffle(members)
            hold.append(members[: max(1, round(len(members) * settings.holdout_fraction))])
        hold_idx = np.sort(np.concatenate(hold))
        train_idx = np.setdiff1d(np.arange(n), hold_idx)
        result = Split(train_idx, hold_idx, "stratified-random")
    if not schema.is_classifier:
        for part, idx in (("training", result.train_index), ("holdout", result.holdout_index)):
            if len(idx) < 2:
                raise TrainingError(f"the {part} part of the {result.method} split has {len(idx)} row(s); add rows")
        return result
    for part, idx in (("training", result.train_index), ("holdout", result.holdout_index)):
        if len(np.unique(df[schema.target].to_numpy()[idx])) < 2:
            raise TrainingError(
                f"the {part} part of the {result.method} split holds only one class of {schema.target!r}; "
                "add more rows of the rare class or change holdout_fraction"
            )
    return result


def check_class_rows(y: np.ndarray, schema: Schema, cv_folds: int) -> int:
    """The folds cross-validation can use (``cv_folds``, fewer when the rarest class has fewer rows), or a
    TrainingError naming the class of ``schema.target`` that has too few training rows (fewer than 2)."""
    counts = np.bincount(y.astype(int), minlength=len(schema.target_classes))
    rarest = int(np.argmin(counts))
    if counts[rarest] < 2:
        if schema.kind == "binary":
            raise TrainingError(
                f"the training data has {counts.min()} row(s) of its rarest class; cross-validation needs at least 2"
            )
        label = schema.target_classes[rarest]
        raise TrainingError(
            f"column {schema.target!r}: class {label!r} has {counts[rarest]} training row(s), but cross-validation "
            f"needs at least 2 per class ({cv_folds} folds wanted); add rows of {label!r} or leave it out of "
            "target_classes and the data"
        )
    return int(min(cv_folds, counts.min()))


def _monotonic(schema: Schema) -> dict[str, int]:
    """Declared directions as monotonic constraints (binary: on the positive class; regression: on the value)."""
    if schema.kind == "multiclass":
        return {}  # scikit-learn has no monotonic constraints for multiclass; the gate's behaviour tests hold them
    out = {}
    for f in schema.features:
        if f.direction is None:
            continue
        sign = 1 if f.direction == "increasing" else -1
        if f.direction_class is not None and str(f.direction_class) != str(schema.positive_class):
            sign = -sign
        out[f"num__{f.name}"] = sign
    return out


def build_pipeline(schema: Schema, estimator: str | EstimatorSpec, *, seed: int = 42) -> Pipeline:
    """Preprocessing for the schema's columns plus the chosen estimator (a shortcut name or a resolved spec)."""
    spec = (
        estimator
        if isinstance(estimator, EstimatorSpec)
        else resolve_estimator(TrainSettings.model_construct(estimator=estimator, estimator_config=None), schema)
    )
    numeric = [f.name for f in schema.features if f.type == "numeric"]
    categorical = [f.name for f in schema.features if f.type == "categorical"]
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if spec.scale:
        num_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("num", Pipeline(num_steps), numeric))
    if categorical:
        transformers.append(
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32), categorical)
        )
    pre = ColumnTransformer(transformers, remainder="drop")
    clf = spec.build(seed)
    if spec.name == "hist_gradient_boosting" and spec.shortcut:
        # the schema's declared directions become monotonic constraints, so the model cannot learn them backwards
        monotonic = _monotonic(schema)
        if monotonic:
            pre.set_output(transform="pandas")
            clf.set_params(monotonic_cst=monotonic)
    return Pipeline([("pre", pre), ("clf", clf)])


#: Cross-validation's scorer per task (scikit-learn's names) and the name it is recorded under.
CV_SCORING = {
    "binary": ("roc_auc", "roc_auc"),
    "multiclass": ("f1_macro", "macro_f1"),
    "regression": ("neg_root_mean_squared_error", "neg_rmse"),
}


def fit(
    train: pd.DataFrame, schema: Schema, settings: TrainSettings, *, param_grid: dict[str, list[Any]] | None = None
) -> TrainResult:
    """Cross-validated search over a small grid (scored per :data:`CV_SCORING`), refitted on all training rows."""
    X = model_frame(train, schema)
    y = train[schema.target].to_numpy()
    spec = resolve_estimator(settings, schema)
    pipeline = build_pipeline(schema, spec, seed=settings.seed)
    grid = {f"clf__{k}": v for k, v in spec.grid.items()} if param_grid is None else param_grid
    cv: Any
    if schema.is_classifier:
        folds = check_class_rows(y, schema, settings.cv_folds)
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=settings.seed)
    else:
        cv = KFold(n_splits=min(settings.cv_folds, len(y)), shuffle=True, random_state=settings.seed)
    scoring, metric = CV_SCORING[schema.kind]
    search = GridSearchCV(pipeline, grid or [{}], scoring=scoring, cv=cv, n_jobs=1, refit=True, error_score="raise")
    start = time.perf_counter()
    try:
        # OpenMP threads spin while they wait; on a busy machine more threads than free cores is ruinous
        # (measured: 6 s with 1 thread, 314 s with 2 on a loaded 2-core machine), so the count is explicit.
        with threadpool_limits(settings.threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"fitting the {spec.name} pipeline failed: {exc}") from exc
    elapsed = time.perf_counter() - start
    align_thresholds_to_float32(search.best_estimator_)
    results = [
        {"params": dict(p), f"mean_{metric}": float(m), f"std_{metric}": float(s)}
        for p, m, s in zip(
            search.cv_results_["params"],
            search.cv_results_["mean_test_score"],
            search.cv_results_["std_test_score"],
            strict=True,
        )
    ]
    return TrainResult(
        pipeline=search.best_estimator_,
        best_params={k.removeprefix("clf__"): v for k, v in search.best_params_.items()},
        cv_score=float(search.best_score_),
        cv_results=results,
        fit_seconds=elapsed,
        cv_metric=metric,
    )
