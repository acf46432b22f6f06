"""The retrain loop as plain functions, one per step. The Prefect flow in ``flows/retrain.py`` wraps each in a task.

Every step reads and writes files in one *run directory* and returns small references and summaries, never
DataFrames or fitted models, so tasks stay cheap to hand over and the loop can be tested without Prefect:

- :func:`ingest`: the data + schema -> ``schema.json``, ``data.parquet`` (typed, PII dropped), ``ingest.json``
- :func:`check_data_quality`: -> ``data_quality.json``, ``data_quality.html`` (Evidently)
- :func:`split_data`: -> ``train.parquet``, ``holdout.parquet``, ``reference.parquet``, ``split.json``
- :func:`train_candidate`: -> ``model.skops``, ``train.json``
- :func:`evaluate_candidate`: -> ``metrics.json``, ``calibration.json``
- :func:`export_onnx`: -> ``model.onnx``
- :func:`check_parity`: -> ``parity.json``
- :func:`run_gate`: the above + the champion from the registry -> ``gate.json``, ``gate.html``
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
from ferry.errors import FerryError
from ferry.gate.behaviour import direction_tests, invariance_test, positive_scores
from ferry.gate.evidently_adapter import data_quality, model_quality
from ferry.gate.verdict import Check, GateResult, decide, fail_closed
from ferry.governance import cards
from ferry.registry.store import Registry
from ferry.registry.versions import ModelVersion
from ferry.schema import Schema
from ferry.scoring import OnnxScorer
from ferry.settings import GateSettings, TrainSettings
from ferry.train import metrics as evaluate
from ferry.train import onnx_export as export
from ferry.train import pipeline as train
from ferry.train.run_files import load_pipeline, read_json, save_pipeline, write_atomic, write_json, write_parquet

__all__ = [
    "LIBRARIES",
    "VERSION_FILES",
    "IngestSummary",
    "NewData",
    "check_data_quality",
    "check_parity",
    "code_revision",
    "evaluate_candidate",
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
    "metrics.json",
    "calibration.json",
    "champion_metrics.json",
    "parity.json",
    "gate.json",
    "gate.html",
    "gate.evidently.json",
    "data_quality.html",
    "data_quality.evidently.json",
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


def new_run_dir(work_dir: str | Path) -> Path:
    """A fresh, uniquely named run directory under ``work_dir``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(work_dir) / f"{stamp}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def _schema(run_dir: Path) -> Schema:
    return Schema.from_dict(read_json(run_dir / "schema.json"), source=str(run_dir / "schema.json"))


def ingest(
    data_url: str, schema_url: str, run_dir: Path, *, storage_options: dict[str, Any] | None = None
) -> IngestSummary:
    """Read the data, validate it against the schema, and keep the typed, PII-free copy in the run directory.

    Raises :class:`ferry.errors.DataError` (naming the column, the rule and example rows) before writing anything.
    """
    schema = Schema.load(schema_url, storage_options=storage_options)
    raw = data_mod.read_table(data_url, storage_options=storage_options)
    typed = data_mod.validate(raw, schema, require_target=True)
    digest = data_mod.sha256_of(data_url, storage_options=storage_options)
    write_atomic(run_dir / "schema.json", schema.dump_json().encode())
    write_parquet(run_dir / "data.parquet", typed)
    latest = typed[schema.timestamp].max() if schema.timestamp is not None and len(typed) else None
    max_ts = None if latest is None or pd.isna(latest) else pd.Timestamp(latest).isoformat()
    summary = IngestSummary(str(run_dir), schema.name, len(typed), str(data_url), digest, max_ts)
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
        stamps = pd.read_parquet(run_dir / "data.parquet", columns=[schema.timestamp])[schema.timestamp]
        cutoff = pd.Timestamp(seen["max_timestamp"])
        newer = int((stamps > cutoff).sum())
        return NewData(newer, total, f"{schema.timestamp} after {cutoff.isoformat()}, the champion's newest row")
    return NewData(total, total, "other data than the champion's, without a timestamp to tell rows apart")


def check_data_quality(run_dir: Path, settings: GateSettings) -> list[Check]:
    """Evidently data-quality checks on the validated data. An Evidently failure becomes a failed check."""
    schema = _schema(run_dir)
    frame = pd.read_parquet(run_dir / "data.parquet")
    checks: list[Check] = []
    error = fail_closed(lambda: data_quality(frame, schema, settings, html_path=run_dir / "data_quality.html"), checks)
    if error is not None:
        checks.append(Check("data.quality_report", error, "runs without error", False, "evidently"))
    write_json(run_dir / "data_quality.json", [asdict(c) for c in checks])
    return checks


def split_data(run_dir: Path, settings: TrainSettings) -> dict[str, Any]:
    """Time-based split when the schema has a timestamp; also keeps a reference sample for later drift checks."""
    schema = _schema(run_dir)
    frame = pd.read_parquet(run_dir / "data.parquet")
    s = train.split(frame, schema, settings)
    training = frame.iloc[s.train_index].reset_index(drop=True)
    holdout = frame.iloc[s.holdout_index].reset_index(drop=True)
    n_ref = min(settings.reference_rows, len(training))
    # the reference sample is kept with the version for as long as it serves: features and target only, never ids
    reference = training.sample(n=n_ref, random_state=settings.seed).reset_index(drop=True)
    reference = reference.drop(columns=[c for c in (schema.id,) if c is not None and c in reference.columns])
    write_parquet(run_dir / "train.parquet", training)
    write_parquet(run_dir / "holdout.parquet", holdout)
    write_parquet(run_dir / "reference.parquet", reference)
    info = {
        "method": s.method,
        "cutoff": s.cutoff,
        "train_rows": len(training),
        "holdout_rows": len(holdout),
        "reference_rows": n_ref,
        "train_positive_rate": float(training[schema.target].mean()),
        "holdout_positive_rate": float(holdout[schema.target].mean()),
    }
    write_json(run_dir / "split.json", info)
    return info


def train_candidate(run_dir: Path, settings: TrainSettings) -> dict[str, Any]:
    """Fit the configured pipeline with its small CV search; save it with skops."""
    schema = _schema(run_dir)
    training = pd.read_parquet(run_dir / "train.parquet")
    result = train.fit(training, schema, settings)
    save_pipeline(result.pipeline, run_dir / "model.skops")
    info = {
        "estimator": settings.estimator,
        "best_params": result.best_params,
        "cv_roc_auc": result.cv_score,
        "cv_results": result.cv_results,
        "fit_seconds": result.fit_seconds,
        "settings": settings.model_dump(),
    }
    write_json(run_dir / "train.json", info)
    return info


def evaluate_candidate(run_dir: Path) -> dict[str, float]:
    """Holdout metrics of the candidate (scikit-learn side) and its reliability table."""
    schema = _schema(run_dir)
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    pipeline = load_pipeline(run_dir / "model.skops")
    prob = pipeline.predict_proba(train.model_frame(holdout, schema))[:, 1]
    y = holdout[schema.target].to_numpy()
    metrics = evaluate.classification_metrics(y, prob)
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "calibration.json", evaluate.calibration_table(y, prob))
    return metrics


def export_onnx(run_dir: Path) -> str:
    schema = _schema(run_dir)
    onnx_bytes = export.to_onnx(load_pipeline(run_dir / "model.skops"), schema)
    write_atomic(run_dir / "model.onnx", onnx_bytes)
    return str(run_dir / "model.onnx")


def check_parity(run_dir: Path, settings: GateSettings) -> export.ParityResult:
    """scikit-learn vs ONNX on the whole holdout."""
    schema = _schema(run_dir)
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    result = export.parity(
        load_pipeline(run_dir / "model.skops"),
        (run_dir / "model.onnx").read_bytes(),
        train.model_frame(holdout, schema),
        schema,
        max_abs_diff=settings.parity_max_abs_diff,
    )
    write_json(run_dir / "parity.json", result.to_dict())
    return result


def _champion_prob(registry: Registry, version: ModelVersion, holdout: pd.DataFrame) -> np.ndarray:
    """The champion's scores on the candidate's holdout, using the champion's own schema and ONNX model."""
    champ_schema = Schema.from_dict(
        json.loads(registry.read_bytes(version, "schema.json")), source=f"champion {version.id} schema.json"
    )
    missing = [c for c in champ_schema.feature_names if c not in holdout.columns]
    if missing:
        raise FerryError(f"the champion {version.id} needs column(s) {missing} that the new holdout lacks")
    return positive_scores(OnnxScorer(registry.read_bytes(version, "model.onnx")), holdout, champ_schema)


def _behaviour_checks(run_dir: Path, schema: Schema, holdout: pd.DataFrame, settings: GateSettings) -> list[Check]:
    scorer = OnnxScorer((run_dir / "model.onnx").read_bytes())
    frame = train.model_frame(holdout, schema)
    checks = [
        Check(
            r.name,
            r.observed,
            f">= {settings.min_direction_agreement:g}",
            r.observed >= settings.min_direction_agreement,
            detail=f"{r.detail} ({r.rows} rows)",
        )
        for r in direction_tests(scorer, frame, schema)
    ]
    inv = invariance_test(scorer, frame, schema)
    checks.append(
        Check(
            inv.name,
            inv.observed,
            f"<= {settings.max_invariance_diff:g}",
            inv.observed <= settings.max_invariance_diff,
            detail=inv.detail,
        )
    )
    return checks


def run_gate(
    run_dir: Path,
    registry: Registry,
    settings: GateSettings,
    *,
    champion_channel: str = "online/champion",
) -> GateResult:
    """All checks in one verdict: data quality, holdout floors, champion comparison, calibration, ONNX parity and
    behavioural tests. Any stage that errors makes the gate fail closed, with the error recorded."""
    schema = _schema(run_dir)
    checks: list[Check] = []
    errors: list[str] = []
    for c in read_json(run_dir / "data_quality.json"):
        checks.append(Check(**c))

    parity = read_json(run_dir / "parity.json")
    checks.append(
        Check(
            "onnx.parity_max_abs_diff",
            float(parity["max_abs_diff"]) if parity["max_abs_diff"] != "inf" else "inf",
            f"<= {settings.parity_max_abs_diff:g}",
            bool(parity["max_abs_diff"] != "inf" and float(parity["max_abs_diff"]) <= settings.parity_max_abs_diff),
            detail=f"sklearn vs onnxruntime on all {parity['rows']} holdout rows",
        )
    )
    checks.append(
        Check(
            "onnx.parity_label_agreement",
            float(parity["label_agreement"]),
            "== 1",
            float(parity["label_agreement"]) == 1.0,
            detail=f"sklearn vs onnxruntime labels on all {parity['rows']} holdout rows",
        )
    )
    metrics = read_json(run_dir / "metrics.json")
    checks.append(
        Check(
            "model.ece",
            metrics["ece"],
            f"<= {settings.max_ece:g}",
            metrics["ece"] <= settings.max_ece,
            detail="expected calibration error, 10 bins",
        )
    )

    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    y = holdout[schema.target].to_numpy()
    champion_id = registry.channel(schema.name, champion_channel)
    champion_prob: np.ndarray | None = None
    if champion_id is not None:
        try:
            champion_prob = _champion_prob(registry, registry.get(champion_id, model=schema.name), holdout)
        except Exception as exc:  # a champion we cannot score means we cannot compare: fail closed
            errors.append(f"cannot score the champion {champion_id} on the holdout: {type(exc).__name__}: {exc}")

    if champion_prob is not None:
        write_json(run_dir / "champion_metrics.json", evaluate.classification_metrics(y, champion_prob))

    def quality() -> list[Check]:
        cand = positive_scores(OnnxScorer((run_dir / "model.onnx").read_bytes()), holdout, schema)
        found, _ = model_quality(
            y, cand, settings, champion_prob=champion_prob, champion=champion_id, html_path=run_dir / "gate.html"
        )
        return found

    if not errors:
        err = fail_closed(quality, checks)
        if err is not None:
            errors.append(err)
    err = fail_closed(lambda: _behaviour_checks(run_dir, schema, holdout, settings), checks)
    if err is not None:
        errors.append(err)
    if not (run_dir / "gate.html").exists():
        write_atomic(run_dir / "gate.html", _error_html(errors))
    result = decide(checks, champion=champion_id, error="; ".join(errors) if errors else None)
    write_atomic(run_dir / "gate.json", result.to_json().encode())
    return result


def _error_html(errors: list[str]) -> bytes:
    import html

    items = "".join(f"<li>{html.escape(e)}</li>" for e in errors) or "<li>no report</li>"
    return f"<!doctype html><title>ferry gate</title><h1>Gate failed closed</h1><ul>{items}</ul>".encode()


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
    """Move each channel to the version when its gate passed; returns the audit records written."""
    if not version.info.get("gate", {}).get("passed"):
        return []
    records = []
    for channel in channels:
        if registry.channel(version.model, channel) == version.id:
            continue
        rec = registry.promote(version.id, channel, model=version.model, reason=reason)
        records.append(rec.to_dict() if hasattr(rec, "to_dict") else asdict(rec))
    return records
