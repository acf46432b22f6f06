"""Where everything of a model lives under the registry root: the one module that spells ``models/<model>/...``.

Under ``<root>/models/<model>/``::

    versions/<version_id>/                  immutable: the registered files plus manifest.json
    .staging/<version_id>-<token>/          a version being written, renamed into versions/ when complete
    channels.json                           channel -> version, with history for rollback
    audit.jsonl                             append-only, hash-chained records of every move
    audit.head.json                         the log's last record and channels.json, signed (ed25519)
    .lock                                   serialises promotions and rollbacks of one model
    online/{predictions,feedback,telemetry}/<date>/<time>-<id>.parquet    the online service's logs
    online/quarantine/<log>/<date>/<time>-<id>.jsonl   log rows no Parquet file could hold, with the reason
    online/wal/<log>/<time>-<id>.jsonl      write-ahead files of a local registry (acknowledged, not yet in Parquet)
    online/prediction-ids.key               the key that signs prediction ids
    batch/inputs/<time>-<id>.parquet        a sample of each batch run's input (read by the monitor)
    batch/runs/<time>-<id>.json             one record per finished batch run (read by ``ferry status``)
    monitor/state.json                      the monitor's cursors, announced drift, last retrain request
    monitor/history.jsonl                   every judgement
    monitor/devices.json                    each device's latest heartbeat
    monitor/reports/<run>-<source>.html     Evidently drift reports
    monitor/rollouts/<time>-<challenger>.json   the evidence of each rollout decision

Beside the models, ``governance/erasure.key`` is the key of the keyed hash that names an erased subject in the
audit log (:mod:`ferry.governance.erasure`).

Every function takes the root in the filesystem's own form (see :func:`ferry.storage.open_fs`) and returns a path
in the same form; an empty root gives the path relative to the registry root.
"""

from __future__ import annotations

__all__ = [
    "MODELS",
    "audit_file",
    "audit_head_file",
    "batch_inputs_dir",
    "batch_runs_dir",
    "channels_file",
    "governance_file",
    "lock_file",
    "model_path",
    "models_dir",
    "monitor_path",
    "online_dir",
    "online_file",
    "staging_dir",
    "version_dir",
]

MODELS = "models"


def _join(root: str, *parts: str) -> str:
    head = [root.rstrip("/")] if root else []
    return "/".join([*head, *parts])


def models_dir(root: str) -> str:
    """The folder holding one folder per model."""
    return _join(root, MODELS)


def model_path(root: str, model: str, *parts: str) -> str:
    """``models/<model>/<parts...>``: the model's folder, or a path inside it."""
    return _join(root, MODELS, model, *parts)


def version_dir(root: str, model: str, version_id: str) -> str:
    return model_path(root, model, "versions", version_id)


def staging_dir(root: str, model: str, name: str) -> str:
    return model_path(root, model, ".staging", name)


def channels_file(root: str, model: str) -> str:
    return model_path(root, model, "channels.json")


def audit_file(root: str, model: str) -> str:
    return model_path(root, model, "audit.jsonl")


def audit_head_file(root: str, model: str) -> str:
    return model_path(root, model, "audit.head.json")


def lock_file(root: str, model: str) -> str:
    return model_path(root, model, ".lock")


def online_dir(root: str, model: str, kind: str) -> str:
    """Where the online service logs ``kind``: ``predictions``, ``feedback`` or ``telemetry`` (and ``quarantine``,
    ``wal``)."""
    return model_path(root, model, "online", kind)


def online_file(root: str, model: str, name: str) -> str:
    """A file of the online service beside its logs, e.g. ``prediction-ids.key``."""
    return model_path(root, model, "online", name)


def batch_inputs_dir(root: str, model: str) -> str:
    return model_path(root, model, "batch", "inputs")


def batch_runs_dir(root: str, model: str) -> str:
    return model_path(root, model, "batch", "runs")


def monitor_path(root: str, model: str, *parts: str) -> str:
    """``monitor/<parts...>``: the monitor's state, history, devices, reports and rollouts."""
    return model_path(root, model, "monitor", *parts)


def governance_file(root: str, name: str) -> str:
    """``governance/<name>``: the registry's own governance files (the erasure key)."""
    return _join(root, "governance", name)
