"""The Evidently adapter: the one module of ferry that imports Evidently.

Evidently 0.7 computes the data-quality, model-quality and drift metrics and runs their tests; this module turns its
snapshots into our own frozen types (:mod:`ferry.gate.verdict`). Evidently is imported inside the functions, so
importing this module costs nothing until a check runs. Every check here **fails closed**: an Evidently error or a
timeout becomes a failed check whose reason says why.

Model quality per task, :func:`model_quality`: Evidently's binary classification metrics, its multiclass
ClassificationPreset or its RegressionPreset, each with floors and the comparison with the champion on the task's
primary metric in its direction. One concept kept whole (about 500 lines): it is the one door to Evidently.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from ferry import storage
from ferry.errors import GateError
from ferry.gate.verdict import Check, ColumnDrift, DriftResult
from ferry.schema import Schema, Task
from ferry.settings import GateSettings

__all__ = [
    "data_drift",
    "data_quality",
    "import_evidently",
    "input_drift",
    "model_quality",
]


T = TypeVar("T")


_OPS = {
    "GreaterOrEqualMetricTest": ">=",
    "GreaterThanMetricTest": ">",
    "LessOrEqualMetricTest": "<=",
    "LessThanMetricTest": "<",
    "EqualMetricTest": "==",
    "NotEqualMetricTest": "!=",
}


def import_evidently() -> None:
    """Import Evidently now (about 5 s of CPU), so a check later in this process does not wait for it.

    Any failure is left for the check itself to report.
    """
    with contextlib.suppress(Exception):
        import evidently.metrics  # noqa: F401


def _clean(value: Any) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("share", value.get("count"))
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else str(f)


def _evidently_checks(snapshot: Any, names: dict[str, str]) -> list[tuple[Check, Any]]:
    """Our checks from an Evidently snapshot: one per Evidently test, named via ``names`` (metric_name -> check),
    each with the test's raw threshold."""
    d = snapshot.dict()
    metrics = {m["id"]: m for m in d["metrics"]}
    checks = []
    for test in d["tests"]:
        metric = metrics[test["metric_config"]["metric_id"]]
        kind = test["test_config"]["type"].rsplit(":", 1)[-1]
        config = test["test_config"]
        threshold = config.get("threshold", config.get("expected"))
        check = Check(
            name=names.get(metric["metric_name"], metric["metric_name"]),
            observed=_clean(metric["value"]),
            threshold=f"{_OPS.get(kind, kind)} {threshold:.4g}" if isinstance(threshold, float) else str(threshold),
            passed=test["status"] == "SUCCESS",
            source="evidently",
            detail=test.get("description", ""),
        )
        checks.append((check, threshold))
    return checks


def _save(snapshot: Any, html_path: Path) -> None:
    """Keep Evidently's own evidence: the HTML report and, beside it, the snapshot JSON (``<stem>.evidently.json``),
    both encrypted at rest when a key is set (they show rows' values)."""
    import json

    from evidently.legacy.utils import NumpyEncoder

    fs = storage.local_fs()
    storage.atomic_write_sealed(fs, str(html_path), snapshot.get_html_str(as_iframe=False).encode())
    text = json.dumps(snapshot.dict(), cls=NumpyEncoder)
    storage.atomic_write_sealed(fs, str(html_path.with_suffix(".evidently.json")), text.encode())


def _with_timeout(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferry-gate")
    try:
        return pool.submit(fn).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError as exc:
        raise GateError(f"{what} did not finish within {timeout_s:g} s (FERRY_GATE_TIMEOUT_S)") from exc
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def data_quality(
    frame: pd.DataFrame, schema: Schema, settings: GateSettings, *, html_path: Path | None = None
) -> list[Check]:
    """Evidently data-quality tests on the validated training data: row count, missing share per feature,
    duplicated rows and the feature-column count the schema declares."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ColumnCount, DuplicatedRowCount, MissingValueCount, RowCount
    from evidently.tests import eq, gte, lte

    features = frame[list(schema.feature_names)]
    definition = DataDefinition(
        numerical_columns=list(schema.numeric_features), categorical_columns=list(schema.categorical_features)
    )
    max_dup = math.floor(settings.max_duplicate_share * len(features))
    metrics: list[Any] = [
        RowCount(tests=[gte(settings.min_rows)]),
        ColumnCount(tests=[eq(len(schema.features))]),
        DuplicatedRowCount(tests=[lte(max_dup)]),
    ]
    names = {
        "RowCount()": "data.row_count",
        "ColumnCount()": "data.schema_columns",
        "DuplicatedRowCount()": "data.duplicated_rows",
    }
    for f in schema.features:
        metrics.append(MissingValueCount(column=f.name, share_tests=[lte(settings.max_missing_share)]))
        names[f"MissingValueCount(column={f.name})"] = f"data.missing_share[{f.name}]"

    def run() -> Any:
        return Report(metrics).run(Dataset.from_pandas(features, data_definition=definition))

    snapshot = _with_timeout(run, settings.timeout_s, "the Evidently data-quality report")
    if html_path is not None:
        _save(snapshot, html_path)
    return [check for check, _ in _evidently_checks(snapshot, names)]


def _quality_snapshot(y: np.ndarray, prob: np.ndarray, tests: dict[str, list[Any]]) -> Any:
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import F1Score, LogLoss, Precision, Recall, RocAuc

    frame = pd.DataFrame({"target": np.asarray(y).astype(int), "prediction": np.asarray(prob, dtype=np.float64)})
    definition = DataDefinition(classification=[BinaryClassification(target="target", prediction_probas="prediction")])
    metrics = [
        RocAuc(tests=tests.get("roc_auc", [])),
        F1Score(tests=tests.get("f1", [])),
        Precision(tests=tests.get("precision", [])),
        Recall(tests=tests.get("recall", [])),
        LogLoss(),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Report(metrics).run(Dataset.from_pandas(frame, data_definition=definition))


_QUALITY_NAMES = {"RocAuc": "roc_auc", "F1Score": "f1", "Precision": "precision", "Recall": "recall"}


def _metric_values(snapshot: Any) -> dict[str, float]:
    out = {}
    for m in snapshot.dict()["metrics"]:
        key = _QUALITY_NAMES.get(m["metric_name"].split("(", 1)[0])
        if key is not None:
            out[key] = float(m["value"])
    return out


@dataclass(frozen=True)
class _Quality:
    """One task's model-quality report, as :func:`_quality` runs it for a candidate and its champion.

    ``snapshot(answers, tests, candidate)`` runs Evidently on answers (the candidate's report carries the preset,
    the champion's only what ``values`` reads); ``names`` maps Evidently's metric kinds to ours; ``floors`` are
    the absolute tests; ``allowed(champion's value)`` is the bar for the primary metric, below (above, when
    ``lower`` is better) which the candidate fails.
    """

    snapshot: Callable[[np.ndarray, dict[str, list[Any]], bool], Any]
    values: Callable[[Any], dict[str, float]]
    names: Mapping[str, str]
    floors: dict[str, Any]
    primary: str
    allowed: Callable[[float], float]
    lower: bool = False
    note: str = ""


def _quality(
    q: _Quality,
    candidate: np.ndarray,
    champion_answers: np.ndarray | None,
    settings: GateSettings,
    *,
    champion: str | None,
    html_path: Path | None,
) -> tuple[list[Check], dict[str, float]]:
    """Floors and, with a champion scored on the same holdout, the primary metric no worse than ``q.allowed`` of
    the champion's value in its direction; Evidently runs every test. Returns the checks and the champion's values."""
    from evidently.tests import gte, lte

    champion_values: dict[str, float] = {}
    if champion_answers is not None:
        champion_values = _with_timeout(
            lambda: q.values(q.snapshot(champion_answers, {}, False)),
            settings.timeout_s,
            "the Evidently report for the champion",
        )
        if not math.isfinite(champion_values.get(q.primary, math.nan)):
            raise GateError(f"the champion's {q.primary} on the holdout is not a number")
    tests: dict[str, list[Any]] = {name: [test] for name, test in q.floors.items()}
    bar: float | None = None
    if champion_values:
        bar = q.allowed(champion_values[q.primary])
        tests.setdefault(q.primary, []).append(lte(bar) if q.lower else gte(bar))
    snapshot = _with_timeout(
        lambda: q.snapshot(candidate, tests, True), settings.timeout_s, "the Evidently model-quality report"
    )
    if html_path is not None:
        _save(snapshot, html_path)
    checks = []
    for c, threshold in _evidently_checks(snapshot, {}):
        metric = q.names.get(c.name.split("(", 1)[0], c.name)
        if bar is not None and metric == q.primary and isinstance(threshold, float) and math.isclose(threshold, bar):
            label = f"model.{metric}_vs_champion"
            detail = f"champion {champion} scored {champion_values[metric]:.4f}{q.note}"
        else:
            label, detail = f"model.{metric}_floor", c.detail
        checks.append(Check(label, c.observed, c.threshold, c.passed, c.source, detail))
    return checks, champion_values


def _binary_report(y: np.ndarray, settings: GateSettings) -> _Quality:
    """Evidently's binary classification metrics on P(positive), ROC AUC and F1 floors, compared on
    ``primary_metric`` within ``tolerance``."""
    from evidently.tests import gte

    return _Quality(
        snapshot=lambda prob, tests, _: _quality_snapshot(y, prob, tests),
        values=_metric_values,
        names=_QUALITY_NAMES,
        floors={"roc_auc": gte(settings.min_roc_auc), "f1": gte(settings.min_f1)},
        primary=settings.primary_metric,
        allowed=lambda v: v - settings.tolerance,
        note=f"; tolerance {settings.tolerance:g}",
    )


#: Our metric name -> (Evidently metric class name, lower is better) for the multiclass and regression checks.
_TASK_METRICS: dict[str, tuple[str, bool]] = {
    "macro_f1": ("F1Score", False),
    "accuracy": ("Accuracy", False),
    "log_loss": ("LogLoss", True),
    "roc_auc_ovr": ("RocAuc", False),
    "rmse": ("RMSE", True),
    "mae": ("MAE", True),
    "r2": ("R2Score", False),
}
_TASK_KINDS = {kind: name for name, (kind, _) in _TASK_METRICS.items()}


def _task_snapshot(frame: pd.DataFrame, definition: Any, preset: Any, tests: dict[str, list[Any]]) -> Any:
    """Evidently's preset for the task plus our metrics with their tests (MAE's tests apply to its mean)."""
    import evidently.metrics as em
    from evidently import Dataset, Report

    metrics: list[Any] = [preset] if preset is not None else []
    for name, found in tests.items():
        cls = getattr(em, _TASK_METRICS[name][0])
        metrics.append(cls(mean_tests=found) if name == "mae" else cls(tests=found))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Report(metrics).run(Dataset.from_pandas(frame, data_definition=definition))


def _task_values(snapshot: Any, names: Sequence[str]) -> dict[str, float]:
    """Our metrics' values from a snapshot (the first metric of each Evidently kind; MAE by its mean)."""
    out: dict[str, float] = {}
    for m in snapshot.dict()["metrics"]:
        kind = m["metric_name"].split("(", 1)[0]
        for name in names:
            if _TASK_METRICS[name][0] == kind and name not in out:
                value = m["value"]
                out[name] = float(value["mean"] if isinstance(value, dict) else value)
    return out


def _task(
    frame: Callable[[np.ndarray], pd.DataFrame],
    definition: Any,
    preset: Any,
    floors: dict[str, Any],
    primary: str,
    allowed: Callable[[float], float],
) -> _Quality:
    """A multiclass or regression report: the task's preset on the candidate, the primary metric alone on the
    champion."""

    def snapshot(answers: np.ndarray, tests: dict[str, list[Any]], candidate: bool) -> Any:
        if candidate:
            return _task_snapshot(frame(answers), definition, preset, tests)
        return _task_snapshot(frame(answers), definition, None, {primary: []})

    return _Quality(
        snapshot=snapshot,
        values=lambda snap: _task_values(snap, [primary]),
        names=_TASK_KINDS,
        floors=floors,
        primary=primary,
        allowed=allowed,
        lower=_TASK_METRICS[primary][1],
    )


def _multiclass_report(y: np.ndarray, k: int, settings: GateSettings) -> _Quality:
    """Evidently's multiclass ClassificationPreset (``y``: class index; answers: one probability column per class),
    a macro-F1 floor, compared on ``multiclass_primary_metric`` within ``tolerance``."""
    from evidently import DataDefinition, MulticlassClassification
    from evidently.presets import ClassificationPreset
    from evidently.tests import gte

    columns = [f"class_{i}" for i in range(k)]

    def frame(prob: np.ndarray) -> pd.DataFrame:
        p = np.asarray(prob, dtype=np.float64)
        p = p / p.sum(axis=1, keepdims=True)  # float32 answers sum to 1 only within rounding
        out = pd.DataFrame(p, columns=columns)
        out.insert(0, "prediction", [columns[i] for i in p.argmax(axis=1)])
        out.insert(0, "target", [columns[i] for i in np.asarray(y).astype(int)])
        return out

    definition = DataDefinition(
        classification=[
            MulticlassClassification(target="target", prediction_labels="prediction", prediction_probas=columns)
        ]
    )
    primary = settings.multiclass_primary_metric
    lower = _TASK_METRICS[primary][1]
    return _task(
        frame,
        definition,
        ClassificationPreset(),
        {"macro_f1": gte(settings.min_macro_f1)},
        primary,
        lambda v: v + settings.tolerance if lower else v - settings.tolerance,
    )


def _regression_report(y: np.ndarray, settings: GateSettings) -> _Quality:
    """Evidently's RegressionPreset, an R² floor, compared on ``regression_primary_metric`` (RMSE or MAE; lower is
    better) at most ``regression_tolerance`` (a share) above the champion's."""
    from evidently import DataDefinition, Regression
    from evidently.presets import RegressionPreset
    from evidently.tests import gte

    def frame(pred: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {"target": np.asarray(y, dtype=np.float64), "prediction": np.asarray(pred, dtype=np.float64)}
        )

    return _task(
        frame,
        DataDefinition(regression=[Regression(target="target", prediction="prediction")]),
        RegressionPreset(),
        {"r2": gte(settings.min_r2)},
        settings.regression_primary_metric,
        lambda v: v * (1 + settings.regression_tolerance),
    )


def model_quality(
    y: np.ndarray,
    answers: np.ndarray,
    settings: GateSettings,
    *,
    task: Task = "binary",
    champion_answers: np.ndarray | None = None,
    champion: str | None = None,
    html_path: Path | None = None,
) -> tuple[list[Check], dict[str, float]]:
    """Evidently's quality tests of the candidate's ``answers`` on the holdout for its ``task`` (binary: P(positive);
    multiclass: one probability column per class, ``y`` the class index; regression: values): absolute floors,
    and, with ``champion_answers`` (the champion scored on the same holdout), the primary metric no worse than the
    champion's in its direction. Returns the checks and the champion's values."""
    if task == "binary":
        report = _binary_report(y, settings)
    elif task == "multiclass":
        report = _multiclass_report(y, np.asarray(answers).shape[1], settings)
    else:
        report = _regression_report(y, settings)
    return _quality(report, answers, champion_answers, settings, champion=champion, html_path=html_path)


def input_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: Schema,
    *,
    drift_share: float = 0.5,
    timeout_s: float = 300.0,
    html_path: Path | None = None,
) -> DriftResult:
    """Evidently's drift test of every feature of ``schema``, ``current`` against ``reference``.

    Both frames hold the features as :func:`ferry.data.validate` types them (numeric float64 with NaN, categorical
    str with None). See :func:`data_drift`.
    """
    return data_drift(
        reference,
        current,
        numeric=schema.numeric_features,
        categorical=schema.categorical_features,
        drift_share=drift_share,
        timeout_s=timeout_s,
        html_path=html_path,
        what=f"the schema {schema.name}",
    )


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    drift_share: float = 0.5,
    timeout_s: float = 300.0,
    html_path: Path | None = None,
    what: str = "the columns compared",
) -> DriftResult:
    """Evidently's drift test of each column, ``current`` against ``reference``: input drift over the features, or
    prediction drift over a probability column (the monitor flow uses both).

    Evidently picks the method per column from its type and the sample sizes (K-S or chi-square on small samples,
    normed Wasserstein or Jensen-Shannon distance on large ones) and its threshold. The data set drifts when at
    least ``drift_share`` of the columns do (0.5 is Evidently's default). With ``html_path``, Evidently's HTML report
    and its snapshot JSON (``<stem>.evidently.json``) are saved. Raises GateError when a frame lacks columns or has
    no rows, when Evidently fails, or after ``timeout_s``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    features = [*numeric, *categorical]
    if not features:
        raise GateError("drift needs at least one column to compare")
    for name, frame in (("reference", reference), ("current", current)):
        lacking = [f for f in features if f not in frame.columns]
        if lacking:
            raise GateError(f"the {name} data lacks column(s) {lacking}; it does not match {what}")
        if len(frame) == 0:
            raise GateError(f"the {name} data has no rows; there is nothing to compare")
    definition = DataDefinition(numerical_columns=list(numeric), categorical_columns=list(categorical))
    metrics: list[Any] = [DriftedColumnsCount(columns=features, drift_share=drift_share)]
    metrics += [ValueDrift(column=f) for f in features]

    def run() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # scipy's chi-square on empty categories
            return Report(metrics, include_tests=True).run(
                Dataset.from_pandas(current[features].reset_index(drop=True), data_definition=definition),
                Dataset.from_pandas(reference[features].reset_index(drop=True), data_definition=definition),
            )

    try:
        snapshot = _with_timeout(run, timeout_s, "the Evidently drift report")
    except GateError:
        raise
    except Exception as exc:  # Evidently's own failures are reported, never taken for "no drift"
        raise GateError(f"Evidently could not compute drift: {type(exc).__name__}: {exc}") from exc
    if html_path is not None:
        _save(snapshot, html_path)
    d = snapshot.dict()
    status = {t["metric_config"]["metric_id"]: t["status"] for t in d["tests"]}
    columns: list[ColumnDrift] = []
    share = math.nan
    for m in d["metrics"]:
        config = m["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            share = float(m["value"]["share"])
        elif config["type"].endswith("ValueDrift"):
            threshold = config.get("threshold")
            columns.append(
                ColumnDrift(
                    feature=str(config["column"]),
                    method=str(config.get("method")),
                    score=_clean(m["value"]),
                    threshold=float(threshold) if threshold is not None else None,
                    drifted=status.get(m["id"]) == "FAIL",
                )
            )
    if len(columns) != len(features) or not math.isfinite(share):
        raise GateError(f"the Evidently drift report is incomplete: {len(columns)} of {len(features)} columns")
    return DriftResult(
        drifted=share >= drift_share,
        drifted_share=share,
        drift_share=drift_share,
        columns=tuple(columns),
        reference_rows=len(reference),
        current_rows=len(current),
    )
