"""Training a candidate: the retrain loop's steps as plain functions, and what each step uses.

| module | what lives there |
|---|---|
| :mod:`~ferry.train.steps` | the retrain loop, one plain function per step, passing a run directory |
| :mod:`~ferry.train.pipeline` | the split and the fitted pipeline (preprocessing + estimator, small CV search) |
| :mod:`~ferry.train.metrics` | holdout metrics of a binary classifier |
| :mod:`~ferry.train.onnx_export` | the ONNX export and its parity with scikit-learn |
| :mod:`~ferry.train.run_files` | the files of a run: JSON and Parquet written atomically, skops pipelines |
| :mod:`~ferry.train.summary` | the rows of the summary, metrics and gate tables (artifacts and the CLI) |
"""

from __future__ import annotations

from ferry.train.metrics import METRIC_NAMES, calibration_table, classification_metrics, expected_calibration_error
from ferry.train.onnx_export import TARGET_OPSET, ParityResult, align_thresholds_to_float32, parity, to_onnx
from ferry.train.pipeline import Split, TrainResult, build_pipeline, fit, model_frame, split
from ferry.train.run_files import (
    TRUSTED_TYPES,
    load_pipeline,
    read_json,
    save_pipeline,
    write_atomic,
    write_json,
    write_parquet,
)
from ferry.train.steps import (
    LIBRARIES,
    VERSION_FILES,
    IngestSummary,
    NewData,
    check_data_quality,
    check_parity,
    code_revision,
    evaluate_candidate,
    export_onnx,
    ingest,
    new_labelled_rows,
    new_run_dir,
    promote_if_passed,
    register_candidate,
    run_gate,
    split_data,
    train_candidate,
    write_lineage,
)
from ferry.train.summary import as_link, fmt, gate_rows, markdown_summary, markdown_table, metric_rows

__all__ = [
    "LIBRARIES",
    "METRIC_NAMES",
    "TARGET_OPSET",
    "TRUSTED_TYPES",
    "VERSION_FILES",
    "IngestSummary",
    "NewData",
    "ParityResult",
    "Split",
    "TrainResult",
    "align_thresholds_to_float32",
    "as_link",
    "build_pipeline",
    "calibration_table",
    "check_data_quality",
    "check_parity",
    "classification_metrics",
    "code_revision",
    "evaluate_candidate",
    "expected_calibration_error",
    "export_onnx",
    "fit",
    "fmt",
    "gate_rows",
    "ingest",
    "load_pipeline",
    "markdown_summary",
    "markdown_table",
    "metric_rows",
    "model_frame",
    "new_labelled_rows",
    "new_run_dir",
    "parity",
    "promote_if_passed",
    "read_json",
    "register_candidate",
    "run_gate",
    "save_pipeline",
    "split",
    "split_data",
    "to_onnx",
    "train_candidate",
    "write_atomic",
    "write_json",
    "write_lineage",
    "write_parquet",
]
