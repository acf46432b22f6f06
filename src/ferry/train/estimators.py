"""Which estimator ends the pipeline: the built-in shortcuts per task, or any scikit-learn estimator named by import
path in a config file, with its params and a small grid.

The shortcuts (``FERRY_TRAIN_ESTIMATOR``)::

    task         hist_gradient_boosting            logistic_regression   ridge   random_forest
    binary       HistGradientBoostingClassifier    LogisticRegression    -       RandomForestClassifier
    multiclass   HistGradientBoostingClassifier    LogisticRegression    -       RandomForestClassifier
    regression   HistGradientBoostingRegressor     -                     Ridge   RandomForestRegressor

A config file (``FERRY_TRAIN_ESTIMATOR_CONFIG``, YAML or JSON) names any other one::

    estimator: sklearn.ensemble.ExtraTreesClassifier   # import path; only scikit-learn's own estimators
    params: {n_estimators: 200}                        # passed to its constructor
    grid: {max_depth: [8, 16]}                         # the small cross-validated search (at most 16 candidates)
    scale: false                                       # standardise numeric features first (linear models)

Whether it converts to ONNX is checked by the export step, which names the step when it does not.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ferry.errors import ConfigError
from ferry.schema import Schema, Task
from ferry.settings import TrainSettings

__all__ = ["MAX_CANDIDATES", "SHORTCUTS", "EstimatorSpec", "resolve_estimator"]

MAX_CANDIDATES = 16

_CLASSIFIERS = {
    "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
    "logistic_regression": "sklearn.linear_model.LogisticRegression",
    "random_forest": "sklearn.ensemble.RandomForestClassifier",
}
_REGRESSORS = {
    "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingRegressor",
    "ridge": "sklearn.linear_model.Ridge",
    "random_forest": "sklearn.ensemble.RandomForestRegressor",
}
SHORTCUTS: dict[Task, dict[str, str]] = {"binary": _CLASSIFIERS, "multiclass": _CLASSIFIERS, "regression": _REGRESSORS}

#: Constructor params and the small, deliberate search space of each shortcut: a few fits per fold keep a retrain
#: in seconds on the demo data.
_PARAMS: dict[str, dict[str, Any]] = {
    "hist_gradient_boosting": {"max_iter": 150},
    "logistic_regression": {"max_iter": 2000},
    "ridge": {},
    "random_forest": {"n_estimators": 100, "n_jobs": 1},
}
_GRIDS: dict[str, dict[str, list[Any]]] = {
    "hist_gradient_boosting": {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31]},
    "logistic_regression": {"C": [0.1, 1.0, 10.0]},
    "ridge": {"alpha": [0.1, 1.0, 10.0]},
    "random_forest": {"max_depth": [8, 16], "min_samples_leaf": [1, 5]},
}
_SEEDED = ("hist_gradient_boosting", "random_forest")


@dataclass(frozen=True)
class EstimatorSpec:
    """An estimator to build: its name (a shortcut or an import path), class, params, grid and preprocessing."""

    name: str
    cls: type[Any]
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    scale: bool = False
    shortcut: bool = True

    def build(self, seed: int) -> Any:
        params = dict(self.params)
        seeded = self.name in _SEEDED if self.shortcut else "random_state" in self.cls().get_params()
        if seeded and "random_state" not in params:
            params["random_state"] = seed
        return self.cls(**params)


def _import(path: str, where: str) -> type[Any]:
    if not re.fullmatch(r"sklearn(\.[A-Za-z_][A-Za-z0-9_]*)+", path):
        raise ConfigError(f"{where}: {path!r} is not an import path of a scikit-learn estimator (sklearn.module.Class)")
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{where}: cannot import {path!r}; check the module and class name") from None
    if not isinstance(cls, type) or not hasattr(cls, "fit") or not hasattr(cls, "get_params"):
        raise ConfigError(f"{where}: {path!r} is not a scikit-learn estimator class")
    return cls


def _check_task(spec: EstimatorSpec, task: Task, where: str) -> None:
    from sklearn.base import is_classifier, is_regressor

    est = spec.cls()
    if task == "regression" and not is_regressor(est):
        raise ConfigError(
            f"{where}: {spec.name} is not a regressor, but the task is regression; use one of "
            f"{', '.join(sorted(_REGRESSORS))} or a regressor's import path"
        )
    if task != "regression" and not is_classifier(est):
        raise ConfigError(
            f"{where}: {spec.name} is not a classifier, but the task is {task}; use one of "
            f"{', '.join(sorted(_CLASSIFIERS))} or a classifier's import path"
        )


def _from_file(path: str) -> EstimatorSpec:
    where = f"estimator config {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found; check FERRY_TRAIN_ESTIMATOR_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read it ({exc})") from None
    try:
        doc = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: is not valid YAML/JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("estimator"), str):
        raise ConfigError(f"{where}: must be a mapping with an estimator: key naming an import path")
    unknown = set(doc) - {"estimator", "params", "grid", "scale"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed are estimator, params, grid, scale")
    params, grid = doc.get("params") or {}, doc.get("grid") or {}
    if not isinstance(params, dict) or not isinstance(grid, dict):
        raise ConfigError(f"{where}: params and grid must be mappings")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid.{key} must be a non-empty list of values")
    candidates = 1
    for values in grid.values():
        candidates *= len(values)
    if candidates > MAX_CANDIDATES:
        raise ConfigError(f"{where}: the grid has {candidates} candidates; keep it to {MAX_CANDIDATES} or fewer")
    cls = _import(doc["estimator"], where)
    accepted = set(cls().get_params())
    for key in [*params, *grid]:
        if key not in accepted:
            raise ConfigError(f"{where}: {doc['estimator']} has no parameter {key!r}")
    return EstimatorSpec(doc["estimator"], cls, dict(params), dict(grid), bool(doc.get("scale", False)), False)


def resolve_estimator(settings: TrainSettings, schema: Schema | None = None) -> EstimatorSpec:
    """The estimator the settings name, checked against the schema's task when one is given."""
    if settings.estimator_config:
        spec = _from_file(settings.estimator_config)
        where = f"estimator config {settings.estimator_config}"
    else:
        task = schema.kind if schema is not None else "binary"
        table = SHORTCUTS[task]
        name = settings.estimator
        if name not in table:
            raise ConfigError(
                f"estimator {name!r} does not fit a {task} task; choose one of {', '.join(sorted(table))} "
                "(FERRY_TRAIN_ESTIMATOR or --estimator)"
            )
        params = dict(_PARAMS[name])
        scale = name in ("logistic_regression", "ridge")
        spec = EstimatorSpec(name, _import(table[name], "estimator"), params, _GRIDS[name], scale)
        where = "estimator"
    if schema is not None:
        _check_task(spec, schema.kind, where)
    return spec
