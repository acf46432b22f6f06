"""Training a candidate: the retrain loop's steps as plain functions, and what each step uses.

| module | what lives there |
|---|---|
| :mod:`~ferry.train.steps` | the retrain loop, one plain function per step, passing a run directory |
| :mod:`~ferry.train.preflight` | a run's inputs checked before anything starts (``ferry train`` runs it first) |
| :mod:`~ferry.train.source` | the data and schema of a retrain asked for by model (drift events): data URL templates |
| :mod:`~ferry.train.estimators` | the estimator shortcuts per task, or any scikit-learn estimator by import path |
| :mod:`~ferry.train.pipeline` | the split and the fitted pipeline (preprocessing + estimator, small CV search) |
| :mod:`~ferry.train.metrics` | holdout metrics per task, primary metrics and directions, the conformal interval |
| :mod:`~ferry.train.gating` | the gate step: every check in one verdict, per task |
| :mod:`~ferry.train.explaining` | the explain step: global importance (rank moves against the champion), pictures |
| :mod:`~ferry.train.plots` | the evaluation pictures per task, the champion beside the candidate |
| :mod:`~ferry.train.byo` | a pipeline fitted elsewhere, through the same evidence (``ferry register``) |
| :mod:`~ferry.train.onnx_export` | the ONNX export and its parity with scikit-learn |
| :mod:`~ferry.train.run_files` | the files of a run: JSON and Parquet written atomically, skops pipelines |
| :mod:`~ferry.train.summary` | the rows of the summary, metrics and gate tables (artifacts and the CLI) |

Names are loaded from their module on first use (as in :mod:`ferry.publish`), so importing one light module of
this package (``ferry.train.summary``, which the CLI's tables use) does not import scikit-learn and the gate.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "ferry.train.steps": (
        "IngestSummary LIBRARIES NewData VERSION_FILES check_data_quality check_parity code_revision "
        "evaluate_candidate explain_candidate export_onnx ingest new_labelled_rows new_run_dir promote_if_passed "
        "register_candidate split_data train_candidate write_lineage"
    ),
    "ferry.train.pipeline": "CV_SCORING Split TrainResult build_pipeline check_class_rows fit model_frame split",
    "ferry.train.metrics": (
        "LOWER_IS_BETTER METRIC_NAMES Interval calibration_table classification_metrics conformal_interval "
        "conformal_split expected_calibration_error multiclass_metrics primary_metric regression_metrics task_metrics"
    ),
    "ferry.train.onnx_export": (
        "ALTERNATIVES ParityResult TARGET_OPSET align_thresholds_to_float32 parity to_onnx unconvertible_step"
    ),
    "ferry.train.preflight": "Preflight preflight",
    "ferry.train.source": "Source resolve_source",
    "ferry.train.estimators": "MAX_CANDIDATES SHORTCUTS EstimatorSpec resolve_estimator",
    "ferry.train.gating": "answers champion_answers run_gate",
    "ferry.train.plots": "PLOT_FILES evaluation_plots",
    "ferry.train.byo": "PICKLE_SUFFIXES load_user_pipeline prepare_run register_pipeline",
    "ferry.train.run_files": (
        "TRUSTED_TYPES load_pipeline read_json read_model read_parquet run_schema save_pipeline write_atomic "
        "write_json write_model write_parquet"
    ),
    "ferry.train.summary": (
        "artifact_rows as_link fmt gate_rows markdown_summary markdown_table markdown_text metric_rows report_note"
    ),
}
_LAZY = {name: module for module, names in _NAMES.items() for name in names.split()}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ferry.train' has no attribute {name!r}")
