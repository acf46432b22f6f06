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
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from ferry.data import to_onnx_inputs
from ferry.errors import TrainingError
from ferry.schema import Schema
from ferry.settings import TrainSettings
from ferry.train.onnx_export import align_thresholds_to_float32

__all__ = ["Split", "TrainResult", "build_pipeline", "fit", "model_frame", "split"]

#: Small, deliberate search spaces: a few fits per fold keep a retrain in seconds on the demo data.
PARAM_GRIDS: dict[str, dict[str, list[Any]]] = {
    "hist_gradient_boosting": {"clf__learning_rate": [0.05, 0.1], "clf__max_leaf_nodes": [15, 31]},
    "logistic_regression": {"clf__C": [0.1, 1.0, 10.0]},
    "random_forest": {"clf__max_depth": [8, 16], "clf__min_samples_leaf": [1, 5]},
}


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


def model_frame(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The feature columns in the exact form ``model.onnx`` takes (float32 numerics, "" for missing categories)."""
    return pd.DataFrame({name: a[:, 0] for name, a in to_onnx_inputs(df, schema).items()}, index=df.index)


def split(df: pd.DataFrame, schema: Schema, settings: TrainSettings) -> Split:
    """Hold out the latest rows when the schema names a timestamp, else a stratified random share."""
    n = len(df)
    n_holdout = max(1, round(n * settings.holdout_fraction))
    if schema.timestamp is not None:
        order = np.argsort(df[schema.timestamp].to_numpy(), kind="stable")
        train_idx, hold_idx = order[: n - n_holdout], order[n - n_holdout :]
        cutoff = str(df[schema.timestamp].iloc[hold_idx[0]])
        result = Split(np.sort(train_idx), np.sort(hold_idx), "time", cutoff)
    else:
        rng = np.random.default_rng(settings.seed)
        y = df[schema.target].to_numpy()
        hold: list[np.ndarray] = []
        for cls in np.unique(y):
            members = np.flatnonzero(y == cls)
            rng.shuffle(members)
            hold.append(members[: max(1, round(len(members) * settings.holdout_fraction))])
        hold_idx = np.sort(np.concatenate(hold))
        train_idx = np.setdiff1d(np.arange(n), hold_idx)
        result = Split(train_idx, hold_idx, "stratified-random")
    for part, idx in (("training", result.train_index), ("holdout", result.holdout_index)):
        if len(np.unique(df[schema.target].to_numpy()[idx])) < 2:
            raise TrainingError(
                f"the {part} part of the {result.method} split holds only one class of {schema.target!r}; "
                "add more rows of the rare class or change holdout_fraction"
            )
    return result


def build_pipeline(schema: Schema, estimator: str, *, seed: int = 42) -> Pipeline:
    """Preprocessing for the schema's columns plus the chosen estimator."""
    numeric = [f.name for f in schema.features if f.type == "numeric"]
    categorical = [f.name for f in schema.features if f.type == "categorical"]
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if estimator == "logistic_regression":
        num_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("num", Pipeline(num_steps), numeric))
    if categorical:
        transformers.append(
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32), categorical)
        )
    clf: Any
    pre = ColumnTransformer(transformers, remainder="drop")
    if estimator == "hist_gradient_boosting":
        # the schema's declared directions become monotonic constraints, so the model cannot learn them backwards
        monotonic = {f"num__{f.name}": 1 if f.direction == "increasing" else -1 for f in schema.features if f.direction}
        if monotonic:
            pre.set_output(transform="pandas")
        clf = HistGradientBoostingClassifier(max_iter=150, random_state=seed, monotonic_cst=monotonic or None)
    elif estimator == "logistic_regression":
        clf = LogisticRegression(max_iter=2000)
    elif estimator == "random_forest":
        clf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    else:
        raise TrainingError(f"estimator {estimator!r} is not one of {sorted(PARAM_GRIDS)}")
    return Pipeline([("pre", pre), ("clf", clf)])


def fit(
    train: pd.DataFrame, schema: Schema, settings: TrainSettings, *, param_grid: dict[str, list[Any]] | None = None
) -> TrainResult:
    """Cross-validated search over a small grid, scored on ROC AUC, refitted on all training rows."""
    X = model_frame(train, schema)
    y = train[schema.target].to_numpy()
    pipeline = build_pipeline(schema, settings.estimator, seed=settings.seed)
    grid = PARAM_GRIDS[settings.estimator] if param_grid is None else param_grid
    counts = np.bincount(y.astype(int), minlength=2)
    folds = int(min(settings.cv_folds, counts.min()))
    if folds < 2:
        raise TrainingError(
            f"the training data has {counts.min()} row(s) of its rarest class; cross-validation needs at least 2"
        )
    search = GridSearchCV(
        pipeline,
        grid,
        scoring="roc_auc",
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=settings.seed),
        n_jobs=1,
        refit=True,
        error_score="raise",
    )
    start = time.perf_counter()
    try:
        # OpenMP threads spin while they wait; on a busy machine more threads than free cores is ruinous
        # (measured: 6 s with 1 thread, 314 s with 2 on a loaded 2-core machine), so the count is explicit.
        with threadpool_limits(settings.threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"fitting the {settings.estimator} pipeline failed: {exc}") from exc
    elapsed = time.perf_counter() - start
    align_thresholds_to_float32(search.best_estimator_)
    results = [
        {"params": dict(p), "mean_roc_auc": float(m), "std_roc_auc": float(s)}
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
    )
