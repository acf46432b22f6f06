"""Bring your own pipeline: a scikit-learn Pipeline fitted elsewhere goes through the same evidence as a retrain.

``ferry register --pipeline FILE --schema S --data HOLDOUT`` calls :func:`prepare_run`, then the retrain's own steps
on the run directory it fills: evaluate, ONNX export, parity, the gate against the champion on the user's holdout,
lineage, register, promote. What a retrain would have made from its training data comes from the holdout instead
(``data.parquet`` for the data-quality checks, ``reference.parquet`` for later drift checks).

The file is read with skops (``.skops``), trusting only types of scikit-learn, numpy and scipy. A pickle
(``.pkl``, ``.pickle``, ``.joblib``) can run any code when loaded, so it is read only with ``trust_pickle``, and
that is recorded in the lineage. Before anything is kept, the pipeline must be a fitted Pipeline whose columns are
the schema's features, whose task is the schema's (classes in the order of ``target_classes``), and whose every
step converts to ONNX (:func:`ferry.train.onnx_export.unconvertible_step` names the one that does not).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from ferry import data as data_mod
from ferry.errors import ConfigError, ExportError, SchemaError
from ferry.registry.store import Registry
from ferry.schema import Schema
from ferry.settings import GateSettings
from ferry.train import onnx_export as export
from ferry.train.run_files import read_json, save_pipeline, write_atomic, write_json, write_parquet, write_reference

__all__ = ["PICKLE_SUFFIXES", "load_user_pipeline", "prepare_run", "register_pipeline"]

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")


def load_user_pipeline(path: Path, *, trust_pickle: bool = False) -> tuple[Pipeline, str]:
    """The pipeline in ``path`` and its format (``skops`` or ``pickle``); ConfigError says why one is refused."""
    import skops.io as sio

    name = path.name.lower()
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline file not found; check the path")
    if name.endswith(PICKLE_SUFFIXES):
        if not trust_pickle:
            raise ConfigError(
                f"{path}: is a pickle, which can run any code when loaded; save the pipeline with skops "
                "(skops.io.dump(pipeline, 'pipeline.skops')) or pass --trust-pickle if you trust the file"
            )
        import joblib

        obj, fmt = joblib.load(path), "pickle"
    elif name.endswith(".skops"):
        raw = path.read_bytes()
        try:
            untrusted = sio.get_untrusted_types(data=raw)
        except Exception as exc:  # skops raises several types for files that are not skops archives
            raise ConfigError(f"{path}: not a readable skops file ({type(exc).__name__}: {exc})") from None
        foreign = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
        if foreign:
            raise ConfigError(
                f"{path}: holds types outside scikit-learn, numpy and scipy ({', '.join(foreign[:5])}); ferry will "
                "not load them"
            )
        obj, fmt = sio.loads(raw, trusted=untrusted), "skops"
    else:
        raise ConfigError(f"{path}: unknown pipeline file type; use .skops (or a pickle with --trust-pickle)")
    if not isinstance(obj, Pipeline):
        raise ConfigError(f"{path}: holds a {type(obj).__name__}, not a scikit-learn Pipeline; wrap it in one")
    return obj, fmt


def _check_fitted(pipeline: Pipeline, path: Path) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(pipeline)
    except NotFittedError:
        raise ConfigError(f"{path}: the pipeline is not fitted; fit it before registering") from None


def _check_columns(pipeline: Pipeline, schema: Schema, path: Path) -> None:
    """The pipeline reads exactly the schema's features (by name when it knows them, else by count)."""
    declared = list(schema.feature_names)
    names = getattr(pipeline, "feature_names_in_", None)
    if names is None:
        n = getattr(pipeline, "n_features_in_", None)
        if n is not None and n != len(declared):
            raise SchemaError(
                f"{path}: the pipeline takes {n} columns, the schema {schema.name!r} declares {len(declared)} "
                "features; fit the pipeline on a DataFrame of exactly the schema's features"
            )
        return
    wanted = [str(c) for c in names]
    missing = [c for c in wanted if c not in declared]
    unused = [c for c in declared if c not in wanted]
    if missing or unused:
        parts = []
        if missing:
            parts.append(f"the pipeline reads column(s) {missing} the schema does not declare as features")
        if unused:
            parts.append(f"the schema declares feature(s) {unused} the pipeline does not read")
        raise SchemaError(f"{path}: {'; '.join(parts)}; make the schema's features the pipeline's columns")


def _align_task(pipeline: Pipeline, schema: Schema, path: Path) -> None:
    """A classifier's classes must be the schema's, in its order; they become 0..k-1 as ferry encodes labels."""
    from sklearn.base import is_classifier, is_regressor

    final = pipeline.steps[-1][1]
    if schema.kind == "regression":
        if not is_regressor(final):
            raise ConfigError(
                f"{path}: the pipeline ends in a {type(final).__name__}, not a regressor; the schema's task is "
                "regression"
            )
        return
    if not is_classifier(final):
        raise ConfigError(
            f"{path}: the pipeline ends in a {type(final).__name__}, not a classifier; the schema's task is "
            f"{schema.kind}"
        )
    classes = [str(c.item() if isinstance(c, np.generic) else c) for c in final.classes_]
    declared = [str(c) for c in schema.target_classes]
    if classes != declared:
        raise SchemaError(
            f"{path}: the pipeline's classes are {classes}, the schema's target_classes {declared}; list "
            "target_classes in the pipeline's order"
        )
    final.classes_ = np.arange(len(classes))  # ferry's labels are indices into target_classes


def prepare_run(
    pipeline_file: str | Path,
    schema_url: str,
    holdout_url: str,
    run_dir: Path,
    *,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """Check the pipeline and the holdout and fill ``run_dir`` as a retrain's ingest, split and train would; every
    refusal happens before anything is written. Returns the run's ``train.json``."""
    path = Path(pipeline_file)
    schema = Schema.load(schema_url)
    pipeline, fmt = load_user_pipeline(path, trust_pickle=trust_pickle)
    _check_fitted(pipeline, path)
    raw = data_mod.read_table(holdout_url)
    schema, note = data_mod.resolve_task(raw, schema)
    _check_columns(pipeline, schema, path)
    _align_task(pipeline, schema, path)
    unsupported = export.unconvertible_step(pipeline)
    if unsupported is not None:
        raise ExportError(f"{path}: {unsupported}")
    holdout = data_mod.validate(raw, schema, require_target=True)
    export.align_thresholds_to_float32(pipeline)

    digest = data_mod.sha256_of(holdout_url)
    write_atomic(run_dir / "schema.json", schema.dump_json().encode())
    for name in ("data.parquet", "holdout.parquet"):
        write_parquet(run_dir / name, holdout)
    reference = holdout.sample(n=min(5000, len(holdout)), random_state=0).reset_index(drop=True)
    write_reference(run_dir, reference, schema)
    write_json(
        run_dir / "ingest.json",
        {
            "run_dir": str(run_dir),
            "model": schema.name,
            "rows": len(holdout),
            "data_url": str(holdout_url),
            "data_sha256": digest,
            "max_timestamp": None,
            "task": schema.kind,
            "task_note": note,
        },
    )
    write_json(
        run_dir / "split.json",
        {
            "method": "holdout given",
            "cutoff": None,
            "train_rows": 0,
            "holdout_rows": len(holdout),
            "reference_rows": len(reference),
        },
    )
    save_pipeline(pipeline, run_dir / "model.skops")
    final = pipeline.steps[-1][1]
    info: dict[str, Any] = {
        "estimator": f"{type(final).__module__.split('._')[0]}.{type(final).__name__}",
        "task": schema.kind,
        "best_params": {},
        "cv_metric": None,
        "cv_score": None,
        "cv_results": [],
        "fit_seconds": 0.0,
        "settings": {},
        "pipeline": {
            "file": str(path),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "format": fmt,
            "trust_pickle": trust_pickle,
            "fitted": "elsewhere",
        },
    }
    write_json(run_dir / "train.json", info)
    return info


def register_pipeline(
    pipeline_file: str | Path,
    schema_url: str,
    holdout_url: str,
    registry: Registry,
    channels: list[str],
    *,
    trust_pickle: bool = False,
    work_dir: str | Path | None = None,
    gate: GateSettings | None = None,
) -> dict[str, Any]:
    """:func:`prepare_run`, then the retrain's steps from evaluation on; returns the outcome ``ferry train`` prints.

    Every refusal of :func:`prepare_run` comes before anything is registered. The version is registered whether or
    not its gate passed (its evidence is kept, as for a retrain); channels move only when it passed, and moved edge
    channels are published.
    """
    from ferry.publish import publish_moved
    from ferry.settings import StorageSettings, TrainSettings
    from ferry.train import steps

    gate = gate or GateSettings()
    run = steps.new_run_dir(work_dir or StorageSettings().work_dir)
    prepare_run(pipeline_file, schema_url, holdout_url, run, trust_pickle=trust_pickle)
    metrics = steps.evaluate_candidate(run, TrainSettings())
    steps.check_data_quality(run, gate)
    steps.export_onnx(run)
    steps.check_parity(run, gate)
    result = steps.run_gate(run, registry, gate)
    steps.explain_candidate(run, registry, gate)
    steps.write_lineage(run)
    steps.write_model_card(run)
    version = steps.register_candidate(run, registry)
    how = "pickle, trusted" if trust_pickle else "skops"
    moved = steps.promote_if_passed(registry, version, channels, reason=f"register: pipeline fitted elsewhere ({how})")
    promoted = [m["channel"] for m in moved]
    published = publish_moved(registry, version.model, promoted)
    champion_metrics = run / "champion_metrics.json"
    return {
        "model": version.model,
        "version": version.id,
        "version_url": registry.version_url(version),
        "gate_html": registry.file_url(version, "gate.html"),
        "data_quality_html": registry.file_url(version, "data_quality.html"),
        "data_url": str(holdout_url),
        "rows": int(metrics["rows"]),
        "metrics": metrics,
        "champion_metrics": read_json(champion_metrics) if champion_metrics.exists() else None,
        "gate_passed": result.passed,
        "checks": result.to_dict()["checks"],
        "reasons": list(result.reasons),
        "champion": result.champion,
        "promoted": promoted,
        "published": [p.target for p in published],
        "run_dir": str(run),
    }
