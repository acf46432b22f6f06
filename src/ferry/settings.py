"""Settings, one class per concern, each reading its own environment prefix; nothing happens at import time.

This is the index of every settings class in ferry. The six shared ones live here; the others live beside the
code that reads them, each in a module of its own so that reading settings never imports that code:

| class | env prefix | module | what |
|---|---|---|---|
| :class:`StorageSettings` | ``FERRY_`` | here | where the registry lives (any fsspec URL), who acts, lock timeout |
| :class:`GateSettings` | ``FERRY_GATE_`` | here | thresholds the gate compares a candidate against, per task |
| :class:`TrainSettings` | ``FERRY_TRAIN_`` | here | the estimator, its CV search, split, interval, threads and seed |
| :class:`EdgeSettings` | ``FERRY_EDGE_`` | here | the TUF repository edge bundles go to, and its keys |
| :class:`AuditSettings` | ``FERRY_AUDIT_`` | here | the ed25519 keys that sign and check the audit log's head |
| :class:`EncryptionSettings` | ``FERRY_ENCRYPTION_`` | here | encryption at rest: the key file; models too? |
| ``ExplainSettings`` | ``FERRY_EXPLAIN_`` | :mod:`ferry.explain.settings` | explanation plans, online limits |
| ``ImportanceSettings`` | ``FERRY_IMPORTANCE_`` | :mod:`ferry.explain.importance_settings` | importance rows |
| ``BatchSettings`` | ``FERRY_BATCH_`` | :mod:`ferry.batch.settings` | batch scoring: channel, batches, drift |
| ``MonitorSettings`` | ``FERRY_MONITOR_`` | :mod:`ferry.monitor.settings` | judging drift, announcing it |
| ``RolloutSettings`` | ``FERRY_ROLLOUT_`` | :mod:`ferry.monitor.rollout` | judging a challenger on live traffic |
| ``OnlineSettings`` | ``FERRY_ONLINE_`` | :mod:`ferry.online.settings` | the online service: routing, keys, limits |
| ``RetentionSettings`` | ``FERRY_RETENTION_`` | :mod:`ferry.governance.retention` | days each kind of kept data stays |
| ``WatchSettings`` | ``FERRY_SECURITY_`` | :mod:`ferry.online.settings` | refusals that make a security event |

``tests/test_settings.py`` checks that this table names every settings class in ``ferry`` with its prefix.
"""

from __future__ import annotations

import getpass
import socket
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseSettings):
    """Where ferry keeps model versions, channel pointers and the audit log."""

    model_config = SettingsConfigDict(env_prefix="FERRY_", extra="ignore")

    registry_url: str = Field(
        default=".ferry/registry",
        min_length=1,
        description="Root of the registry: a local directory or any fsspec URL (s3://bucket/prefix, gs://...).",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for the registry as JSON, e.g. "
        '{"endpoint_url": "http://127.0.0.1:9000", "key": "...", "secret": "..."} or server-side encryption '
        '{"s3_additional_kwargs": {"ServerSideEncryption": "AES256"}}; every writer of the registry uses them; '
        "empty: the store's own configuration (AWS_* variables, ~/.aws).",
    )
    work_dir: str = Field(
        default=".ferry/runs",
        min_length=1,
        description="Local directory for the working files of each retrain run (one subdirectory per run).",
    )
    actor: str | None = Field(
        default=None,
        max_length=200,
        description="Who is recorded in the audit log for promotions and rollbacks. Default: user@host.",
    )
    lock_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="How long a promotion waits for another one to finish."
    )
    lock_lease_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="On object stores, how long a lock outlives a holder that stopped renewing it (crashed) before "
        "another process takes it over.",
    )
    link_expiry_s: int = Field(
        default=86_400,
        ge=60,
        le=604_800,
        description="How long the presigned HTTPS links to reports and outputs on an object store (Prefect UI "
        "artifacts) stay valid; at most 7 days, S3's limit.",
    )

    def resolved_actor(self) -> str:
        if self.actor:
            return self.actor
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return f"{user}@{socket.gethostname()}"


class GateSettings(BaseSettings):
    """Thresholds of the promotion gate. Every check records its own threshold, so these show in every report."""

    model_config = SettingsConfigDict(env_prefix="FERRY_GATE_", extra="ignore")

    primary_metric: Literal["roc_auc", "f1", "precision", "recall"] = Field(
        default="roc_auc", description="Binary: the metric the candidate is compared on against the champion."
    )
    tolerance: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Binary and multiclass: how much worse than the champion the candidate may be (absolute).",
    )
    min_roc_auc: float = Field(default=0.70, ge=0, le=1, description="Binary: floor for ROC AUC on the holdout.")
    min_f1: float = Field(default=0.30, ge=0, le=1, description="Binary: floor for F1 on the holdout.")
    max_ece: float = Field(
        default=0.10, ge=0, le=1, description="Binary: ceiling for expected calibration error (10 bins) on the holdout."
    )
    max_missing_share: float = Field(
        default=0.30, ge=0, le=1, description="Ceiling for the share of missing values in any one feature column."
    )
    max_duplicate_share: float = Field(
        default=0.01, ge=0, le=1, description="Ceiling for the share of fully duplicated rows."
    )
    min_rows: int = Field(default=500, ge=1, description="Fewest rows a training set may have.")
    parity_max_abs_diff: float = Field(
        default=1e-5,
        gt=0,
        le=1e-2,
        description="Binary and multiclass: largest allowed |sklearn prob - ONNX prob| on the holdout (multiclass: "
        "every class).",
    )
    parity_max_rel_diff: float = Field(
        default=1e-4,
        gt=0,
        le=1e-2,
        description="Regression: largest allowed |sklearn value - ONNX value| over the target's standard deviation.",
    )
    multiclass_primary_metric: Literal["macro_f1", "accuracy", "log_loss", "roc_auc_ovr"] = Field(
        default="macro_f1", description="Multiclass: the metric the candidate is compared on against the champion."
    )
    min_macro_f1: float = Field(default=0.30, ge=0, le=1, description="Multiclass: floor for macro F1 on the holdout.")
    regression_primary_metric: Literal["rmse", "mae"] = Field(
        default="rmse", description="Regression: the metric the candidate is compared on (lower is better)."
    )
    regression_tolerance: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Regression: how much worse than the champion's RMSE/MAE the candidate may be, as a share of it.",
    )
    min_r2: float = Field(default=0.0, ge=-1, le=1, description="Regression: floor for R² on the holdout.")
    max_coverage_shortfall: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description="Regression: how far the interval's coverage on the holdout check rows may fall below the "
        "declared coverage (two binomial standard errors when the check rows are few and that is more).",
    )
    min_direction_agreement: float = Field(
        default=0.90,
        ge=0,
        le=1,
        description="Behavioural test: share of rows whose score moves the declared way when a monotone feature grows.",
    )
    max_invariance_diff: float = Field(
        default=1e-6,
        ge=0,
        le=1,
        description="Behavioural test: largest change in a row's score when scored alone vs inside a batch.",
    )
    timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="Evidently checks that take longer than this fail the gate."
    )


class TrainSettings(BaseSettings):
    """How the candidate pipeline is trained."""

    model_config = SettingsConfigDict(env_prefix="FERRY_TRAIN_", extra="ignore")

    estimator: Literal["hist_gradient_boosting", "logistic_regression", "ridge", "random_forest"] = Field(
        default="hist_gradient_boosting",
        description="The estimator shortcut at the end of the pipeline, per task: hist_gradient_boosting (every "
        "task), logistic_regression (binary, multiclass), ridge (regression), random_forest (every task).",
    )
    estimator_config: str | None = Field(
        default=None,
        description="A YAML/JSON file naming any scikit-learn estimator by import path, with params and a small grid "
        "(see ferry.train.estimators); overrides estimator.",
    )
    interval_coverage: float = Field(
        default=0.9,
        gt=0.5,
        lt=1.0,
        description="Regression: coverage of the split-conformal prediction interval stored with the version.",
    )
    cv_folds: int = Field(default=3, ge=2, le=10, description="Folds of the small cross-validated search.")
    holdout_fraction: float = Field(
        default=0.2, gt=0.05, lt=0.5, description="Share of rows kept out for evaluation (the latest ones by time)."
    )
    threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="OpenMP/BLAS threads for fitting. Raise it only on an idle machine with that many free cores.",
    )
    seed: int = Field(default=42, ge=0, description="Seed for the split, the search and the estimator.")
    reference_rows: int = Field(
        default=5000, ge=100, le=1_000_000, description="Rows of training data kept with the version for drift checks."
    )


class EdgeSettings(BaseSettings):
    """The TUF repository that devices pull bundles from, and the keys that sign it."""

    model_config = SettingsConfigDict(env_prefix="FERRY_EDGE_", extra="ignore")

    repo_url: str = Field(
        default=".ferry/edge-repo",
        min_length=1,
        description="Root of the TUF repository (serve it with any static file host): a directory or fsspec URL.",
    )
    keys_dir: str = Field(
        default=".ferry/edge-keys",
        min_length=1,
        description="Local directory of the signing keys (ed25519 PEM files, one per role and slot); never inside "
        "repo_url.",
    )
    timestamp_expiry_hours: float = Field(
        default=2,
        gt=0,
        le=24 * 30,
        description="Validity of timestamp metadata, re-signed by the edge-resign flow every 30 minutes: the longest "
        "a device can be served a stale repository without knowing it.",
    )
    snapshot_expiry_days: float = Field(default=7, gt=0, le=365, description="Validity of snapshot metadata.")
    targets_expiry_days: float = Field(default=90, gt=0, le=3650, description="Validity of targets metadata.")
    root_expiry_days: float = Field(default=365, gt=0, le=3650, description="Validity of root metadata.")
    thresholds: dict[str, int] = Field(
        default_factory=dict,
        description='Signatures each role needs, e.g. {"root": 2, "targets": 2}; 1 for a role not named. '
        "Read when the repository is created.",
    )
    key_passphrase: SecretStr | None = Field(
        default=None,
        min_length=8,
        description="Passphrase the signing keys are stored encrypted with (PKCS#8, AES-256); keys found in clear "
        "are encrypted the first time they are used. None: keys are stored in clear (mode 0600).",
    )


class AuditSettings(BaseSettings):
    """The key that signs each audit log's head after every move, and the key that checks it."""

    model_config = SettingsConfigDict(env_prefix="FERRY_AUDIT_", extra="ignore")

    key_file: str | None = Field(
        default=None,
        min_length=1,
        description="ed25519 private key (PEM) that signs audit.head.json after every move; made with mode 0600 "
        "(and its public key beside it, <file>.pub) on first use. Never inside the registry. None: heads are not "
        "signed.",
    )
    public_key_file: str | None = Field(
        default=None,
        min_length=1,
        description="ed25519 public key (PEM) that `ferry audit verify` checks heads with; default: <key_file>.pub. "
        "Give auditors this file.",
    )


class EncryptionSettings(BaseSettings):
    """Encryption at rest (:mod:`ferry.storage.sealed`): the key ring that seals every object holding rows of data."""

    model_config = SettingsConfigDict(env_prefix="FERRY_ENCRYPTION_", extra="ignore")

    key_file: str | None = Field(
        default=None,
        min_length=1,
        description="Key file (one 32-byte key per line as 64 hex digits; the first encrypts, all decrypt; make one "
        "with `ferry keys data-key FILE`). Set: logs, samples, run-directory data and Evidently reports are "
        "encrypted with AES-256-GCM. Never inside the registry. None: written in clear.",
    )
    models: bool = Field(
        default=False,
        description="Encrypt the model artifacts (model.onnx, model.skops) too; needs key_file.",
    )


def explain(exc: ValidationError) -> str:
    """A wrong setting in one line: each environment variable, the value it had and what is wrong with it."""
    prefixes = _prefixes()
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        name = f"{prefixes[exc.title]}{field}".upper() if exc.title in prefixes else field
        given = f"={error['input']!r}" if "input" in error and not isinstance(error["input"], dict) else ""
        parts.append(f"{name}{given}: {error['msg']}")
    return f"invalid setting{'s' if len(parts) > 1 else ''} ({exc.title}): " + "; ".join(parts)


def _prefixes() -> dict[str, str]:
    """Every settings class imported so far, by name, with its environment prefix."""
    found: dict[str, str] = {}
    todo = list(BaseSettings.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        found[cls.__name__] = str(cls.model_config.get("env_prefix", ""))
    return found
