"""The retrain loop as plain functions, one per step. The Prefect flow in ``flows/retrain.py`` wraps each in a task.

Every step reads and writes files in one *run directory* and returns small references and summaries, never
DataFrames or fitted models, so tasks stay cheap to hand over and the loop can be tested without Prefect:

- :func:`ingest`: the data + schema -> ``schema.json``, ``data.parquet`` (typed, PII dropped), ``ingest.json``
- :func:`check_data_quality`: -> ``data_quality.json``, ``data_quality.html`` (Evidently)
- :func:`split_data`: -> ``train.parquet``, ``holdout.parquet``, ``reference.parquet``, ``explain.npz``, ``split.json``
- :func:`train_candidate`: -> ``model.skops``, ``train.json``
- :func:`evaluate_candidate`: -> ``metrics.json``, ``calibration.json``
- :func:`export_onnx`: -> ``model.onnx``
- :func:`check_parity`: -> ``parity.json``
- :func:`run_gate` (from :mod:`ferry.train.gating`): the above + the champion -> ``gate.json``, ``gate.html``
- :func:`explain_candidate` (from :mod:`ferry.train.explaining`): -> ``importance.json`` and the ``plot_*.svg``
  pictures (global importance, the task's evaluation plots beside the champion's)
- :func:`write_lineage`, :func:`register_candidate`: -> ``lineage.json``, then one immutable registry version
- :func:`promote_if_passed`: channel moves + audit records, only when the gate passed

One concept kept whole (about 460 lines): the loop reads in the order it runs, one function per step.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferry import data as data_mod
from ferry.errors import ExportError
from ferry.gate.evidently_adapter import data_quality
from ferry.gate.verdict import Check, fail_closed
from ferry.governance import cards
from ferry.registry.release import release
from ferry.registry.store import Registry
from ferry.registry.versions import ModelVersion
from ferry.schema import Schema
from ferry.settings import GateSettings, TrainSettings
from ferry.train import metrics as evaluate
from ferry.train import onnx_export as export
from ferry.train import pipeline as train
from ferry.train.estimators import resolve_estimator
from ferry.train.explaining import IMPORTANCE_PLOT, WATERFALL_PLOT, explain_candidate
from ferry.train.gating import run_gate
from ferry.train.plots import PLOT_FILES
from ferry.train.run_files import (
    load_pipeline,
    read_json,
    read_model,
    read_parquet,
    run_schema,
    save_pipeline,
    write_atomic,
    write_json,
    write_model,
    write_parquet,
    write_reference,
)

__all__ = [
    "LIBRARIES",
    "VERSION_FILES",
    "IngestSummary",
    "NewData",
    "check_data_quality",
    "check_parity",
    "code_revision",
    "evaluate_candidate",
    "explain_candidate",
    "export_onnx",
    "ingest",
    "new_labelled_rows",
    "new_run_dir",
    "promote_if_passed",
    "register_candidate",
    "run_gate",
    "split_data",
    "train_candidate",
    "write_lineage",
    "write_model_card",
]

#: Files of a run directory that become part of the registered version.
VERSION_FILES = (
    "model.onnx",
    "model.skops",
    "schema.json",
    "lineage.json",
    "reference.parquet",
    "explain.npz",
    "metrics.json",
    "calibration.json",
    "interval.json",
    "champion_metrics.json",
    "parity.json",
    "gate.json",
    "gate.html",
    "gate.evidently.json",
    "data_quality.html",
    "data_quality.evidently.json",
    "importance.json",
    IMPORTANCE_PLOT,
    WATERFALL_PLOT,
    *PLOT_FILES,
    "model_card.json",
    "model_card.md",
)
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas", "pyarrow", "evidently", "skops")


@dataclass(frozen=True)
class IngestSummary:
    run_dir: str
    model: str
    rows: int
    data_url: str
    data_sha256: str
    max_timestamp: str | None = None
    task: str = "binary"
    task_note: str | None = None


def new_run_dir(work_dir: str | Path) -> Path:
    """A fresh, uniquely named run directory under ``work_dir``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(work_dir) / f"{stamp}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


_schema = run_schema


def ingest(
    data_url: str, schema_url: str, run_dir: Path, *, storage_options: dict[str, Any] | None = None
) -> IngestSummary:
    """Read the data, validate it against the schema, and keep the typed, PII-free copy in the run directory.

    Raises :class:`ferry.errors.DataError` (naming the column, the rule and example rows) before writing anything.
    """
    schema = Schema.load(schema_url, storage_options=storage_options)
    raw = data_mod.read_table(data_url, storage_options=storage_options)
    schema, note = data_mod.resolve_task(raw, schema)
    typed = data_mod.validate(raw, schema, require_target=True)
    digest = data_mod.sha256_of(data_url, storage_options=storage_options)
    write_atomic(run_dir / "schema.json", schema.dump_json().encode())
    write_parquet(run_dir / "data.parquet", typed)
    latest = typed[schema.timestamp].max() if schema.timestamp is not None and len(typed) else None
    max_ts = None if latest is None or pd.isna(latest) else pd.Timestamp(latest).isoformat()
    summary = IngestSummary(str(run_dir), schema.name, len(typed), str(data_url), digest, max_ts, schema.kind, note)
    write_json(run_dir / "ingest.json", asdict(summary))
    return summary


@dataclass(frozen=True)
class NewData:
    """How many labelled rows of a run's data the champion was not trained on, and how that was told."""

    rows: int
    total: int
    how: str


def new_labelled_rows(run_dir: Path, registry: Registry, champion_channel: str) -> NewData:
    """Rows of the ingested data that are new to the champion: later than the newest row it was trained on (when
    the schema names a timestamp), else all of them unless the data file is the very one it was trained on."""
    schema = _schema(run_dir)
    info = read_json(run_dir / "ingest.json")
    total = int(info["rows"])
    vid = registry.channel(schema.name, champion_channel)
    if vid is None:
        return NewData(total, total, f"no champion on {champion_channel}: every row is new")
    champion = registry.get(vid, model=schema.name)
    try:
        seen = json.loads(registry.read_bytes(champion, "lineage.json")).get("data", {})
    except FileNotFoundError:
        return NewData(total, total, f"champion {vid} has no lineage: every row counts as new")
    if seen.get("sha256") == info["data_sha256"]:
        return NewData(0, total, f"the same data (sha256 {info['data_sha256'][:12]}) the champion {vid} was trained on")
    if schema.timestamp is not None and seen.get("max_timestamp"):
        stamps = read_parquet(run_dir / "data.parquet", columns=[schema.timestamp])[schema.timestamp]
        cutoff = pd.Timestamp(seen["max_timestamp"])
        newer = int((stamps > cutoff).sum())
        return NewData(newer, total, f"{schema.timestamp} after {cutoff.isoformat()}, the champion's newest row")
    return NewData(total, total, "other data than the champion's, without a timestamp to tell rows apart")


def check_data_quality(run_dir: Path, settings: GateSettings) -> list[Check]:
    """Evidently data-quality checks on the validated data. An Evidently failure becomes a failed check."""
    schema = _schema(run_dir)
    frame = read_parquet(run_dir / "data.parquet")
    checks: list[Check] = []
    error = fail_closed(lambda: data_quality(frame, schema, settings, html_path=run_dir / "data_quality.html"), checks)
    if error is not None:
        checks.append(Check("data.quality_report", error, "runs without error", False, "evidently"))
    write_json(run_dir / "data_quality.json", [asdict(c) for c in checks])
    return checks


def split_data(run_dir: Path, settings: TrainSettings) -> dict[str, Any]:
    """Time-based split when the schema has a timestamp; also keeps a reference sample for later drift checks."""
    schema = _schema(run_dir)
    frame = read_parquet(run_dir / "data.parquet")
    s = train.split(frame, schema, settings)
    training = frame.iloc[s.train_index].reset_index(drop=True)
    holdout = frame.iloc[s.holdout_index].reset_index(drop=True)
    n_ref = min(settings.reference_rows, len(training))
    # the reference sample is kept with the version for as long as it serves: features and target only, never ids
    reference = training.sample(n=n_ref, random_state=settings.seed).reset_index(drop=True)
    reference = reference.drop(columns=[c for c in (schema.id,) if c is not None and c in reference.columns])
    write_parquet(run_dir / "train.parquet", training)
    write_parquet(run_dir / "holdout.parquet", holdout)
    write_reference(run_dir, reference, schema)
    info: dict[str, Any] = {
        "method": s.method,
        "cutoff": s.cutoff,
        "train_rows": len(training),
        "holdout_rows": len(holdout),
        "reference_rows": n_ref,
    }
    if schema.kind == "binary":
        info["train_positive_rate"] = float(training[schema.target].mean())
        info["holdout_positive_rate"] = float(holdout[schema.target].mean())
    elif schema.kind == "multiclass":
        for part, frame_part in (("train", training), ("holdout", holdout)):
            counts = np.bincount(frame_part[schema.target].to_numpy(), minlength=len(schema.target_classes))
            info[f"{part}_class_rows"] = {str(c): int(n) for c, n in zip(schema.target_classes, counts, strict=True)}
    else:
        info["train_target_mean"] = float(training[schema.target].mean())
        info["holdout_target_mean"] = float(holdout[schema.target].mean())
    write_json(run_dir / "split.json", info)
    return info


def train_candidate(run_dir: Path, settings: TrainSettings) -> dict[str, Any]:
    """Fit the configured pipeline with its small CV search; save it with skops."""
    schema = _schema(run_dir)
    unsupported = export.unconvertible_step(train.build_pipeline(schema, resolve_estimator(settings, schema)))
    if unsupported is not None:  # refuse before fitting: the model could never ship
        raise ExportError(unsupported)
    training = read_parquet(run_dir / "train.parquet")
    result = train.fit(training, schema, settings)
    save_pipeline(result.pipeline, run_dir / "model.skops")
    info = {
        "estimator": resolve_estimator(settings, schema).name,
        "task": schema.kind,
        "best_params": result.best_params,
        "cv_metric": result.cv_metric,
        "cv_score": result.cv_score,
        "cv_results": result.cv_results,
        "fit_seconds": result.fit_seconds,
        "settings": settings.model_dump(),
    }
    if schema.kind == "binary":
        info["cv_roc_auc"] = result.cv_score
    write_json(run_dir / "train.json", info)
    return info


def evaluate_candidate(run_dir: Path, settings: TrainSettings | None = None) -> dict[str, float]:
    """Holdout metrics of the candidate (scikit-learn side) per task; a classifier's reliability table (binary), a
    regressor's split-conformal interval at ``settings.interval_coverage`` (``interval.json``)."""
    settings = settings or TrainSettings()
    schema = _schema(run_dir)
    holdout = read_parquet(run_dir / "holdout.parquet")
    pipeline = load_pipeline(run_dir / "model.skops")
    frame = train.model_frame(holdout, schema)
    y = holdout[schema.target].to_numpy()
    if schema.kind == "regression":
        pred = np.asarray(pipeline.predict(frame), dtype=np.float64).reshape(-1)
        interval = evaluate.conformal_interval(y, pred, settings.interval_coverage, seed=settings.seed)
        write_json(run_dir / "interval.json", interval.to_dict())
        metrics = evaluate.regression_metrics(y, pred, interval)
    elif schema.kind == "multiclass":
        metrics = evaluate.multiclass_metrics(y, pipeline.predict_proba(frame), schema.target_classes)
    else:
        prob = pipeline.predict_proba(frame)[:, 1]
        metrics = evaluate.classification_metrics(y, prob)
        write_json(run_dir / "calibration.json", evaluate.calibration_table(y, prob))
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def export_onnx(run_dir: Path) -> str:
    schema = _schema(run_dir)
    interval = None
    if (run_dir / "interval.json").exists():
        interval = evaluate.Interval(**read_json(run_dir / "interval.json"))
    onnx_bytes = export.to_onnx(load_pipeline(run_dir / "model.skops"), schema, interval=interval)
    write_model(run_dir / "model.onnx", onnx_bytes)
    return str(run_dir / "model.onnx")


def check_parity(run_dir: Path, settings: GateSettings) -> export.ParityResult:
    """scikit-learn vs ONNX on the whole holdout."""
    schema = _schema(run_dir)
    holdout = read_parquet(run_dir / "holdout.parquet")
    regression = schema.kind == "regression"
    result = export.parity(
        load_pipeline(run_dir / "model.skops"),
        read_model(run_dir / "model.onnx"),
        train.model_frame(holdout, schema),
        schema,
        max_abs_diff=settings.parity_max_rel_diff if regression else settings.parity_max_abs_diff,
        scale=float(holdout[schema.target].std()) if regression and len(holdout) > 1 else 1.0,
    )
    write_json(run_dir / "parity.json", result.to_dict())
    return result


def code_revision() -> str:
    """The git commit of the code that trained the model, or "unknown" outside a checkout."""
    if os.environ.get("FERRY_CODE_REVISION"):
        return os.environ["FERRY_CODE_REVISION"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and rev else "unknown"


def write_lineage(run_dir: Path) -> dict[str, Any]:
    """Data hash, code revision, parameters and library versions: enough to say how this model came to be."""
    ingest_info = read_json(run_dir / "ingest.json")
    train_info = read_json(run_dir / "train.json")
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    lineage = {
        "data": {
            "url": ingest_info["data_url"],
            "sha256": ingest_info["data_sha256"],
            "rows": ingest_info["rows"],
            "max_timestamp": ingest_info.get("max_timestamp"),
        },
        "split": read_json(run_dir / "split.json"),
        "code_revision": code_revision(),
        "estimator": train_info["estimator"],
        "params": train_info["best_params"],
        "train_settings": train_info["settings"],
        **({"pipeline": train_info["pipeline"]} if "pipeline" in train_info else {}),
        "python": platform.python_version(),
        "libraries": versions,
    }
    write_json(run_dir / "lineage.json", lineage)
    return lineage


def write_model_card(run_dir: Path) -> dict[str, Any]:
    """``model_card.json`` and ``model_card.md`` from the run's evidence (after the gate and the lineage)."""
    return cards.write(run_dir)


def register_candidate(run_dir: Path, registry: Registry) -> ModelVersion:
    """Register everything the run produced as one immutable version (whether or not the gate passed)."""
    schema = _schema(run_dir)
    if not (run_dir / "lineage.json").exists():
        write_lineage(run_dir)
    files = {name: run_dir / name for name in VERSION_FILES if (run_dir / name).exists()}
    gate = read_json(run_dir / "gate.json")
    info = {
        "metrics": read_json(run_dir / "metrics.json"),
        "gate": {
            "passed": gate["passed"],
            "reasons": gate["reasons"],
            "champion": gate.get("champion"),
            "error": gate.get("error"),
            "checks": len(gate["checks"]),
            "failed": sum(1 for c in gate["checks"] if not c["passed"]),
        },
        "lineage": read_json(run_dir / "lineage.json"),
        "train": {k: v for k, v in read_json(run_dir / "train.json").items() if k != "cv_results"},
    }
    return registry.register(schema.name, files, info)


def promote_if_passed(
    registry: Registry, version: ModelVersion, channels: list[str], *, reason: str
) -> list[dict[str, Any]]:
    """Move the channels to the version when its gate passed: one channel as a promotion, several as one release
    (one audit record, all or nothing); BundleError before any move when an edge channel is among them and the
    version's bundle cannot be built. Returns one entry per channel moved: its name, versions and audit record."""
    if not version.info.get("gate", {}).get("passed"):
        return []
    todo = [c for c in channels if registry.channel(version.model, c) != version.id]
    if not todo:
        return []
    from ferry.publish import check_publishable

    check_publishable(registry, version.id, todo, model=version.model)  # BundleError before any move
    if len(todo) == 1:
        rec = registry.promote(version.id, todo[0], model=version.model, reason=reason)
    else:
        rec = release(registry, version.id, todo, model=version.model, reason=reason).record
    return [
        {"channel": m.channel, "from_version": m.from_version, "to_version": m.to_version, "seq": rec.seq,
         "action": rec.action}
        for m in rec.changes
    ]  # fmt: skip
