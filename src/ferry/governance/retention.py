"""Retention: how long each kind of kept data may stay, and the sweep that removes what is older.

Personal data is kept only as long as it is needed. Each kind of data ferry keeps outside a model version has a
retention in days (:class:`RetentionSettings`, ``FERRY_RETENTION_*``; none means kept for ever):

| kind | where, under ``models/<model>/`` | dated by |
|---|---|---|
| ``predictions``, ``feedback``, ``telemetry`` | ``online/<kind>/<date>/`` | the day folder |
| ``quarantine`` | ``online/quarantine/<log>/<date>/`` | the day folder |
| ``batch_inputs`` | ``batch/inputs/<time>-<id>.parquet`` | the name |
| ``batch_runs`` | ``batch/runs/<time>-<id>.json`` | the name |
| ``monitor_reports`` | ``monitor/reports/<run>-<source>.{html,evidently.json}`` | the name |
| ``monitor_history`` | ``monitor/history.jsonl`` | each line's ``at`` |
| ``rollouts`` | ``monitor/rollouts/<time>-<version>.json`` | the name |
| ``runs`` | the retrain run directories under the work directory | the name |

Versions, channels and the audit log are never swept: they are the evidence of what served when. The sweeps
(:func:`sweep` for a registry, :func:`sweep_runs` for run directories) are what the ``housekeeping`` flow runs on a
schedule; ``dry_run`` lists without removing. A file whose name carries no date is dated by its modification time,
when the store reports one, else kept.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ferry import storage
from ferry.registry import layout

__all__ = ["KINDS", "RetentionSettings", "Swept", "sweep", "sweep_runs"]

KINDS = (
    "predictions",
    "feedback",
    "telemetry",
    "quarantine",
    "batch_inputs",
    "batch_runs",
    "monitor_reports",
    "monitor_history",
    "rollouts",
    "runs",
)


def _days(default: float | None, what: str) -> Any:
    return Field(default=default, gt=0, le=36_500, description=f"Days {what} are kept (unset: for ever).")


class RetentionSettings(BaseSettings):
    """Days each kind of kept data stays before the housekeeping sweep removes it."""

    model_config = SettingsConfigDict(env_prefix="FERRY_RETENTION_", extra="ignore")

    predictions: float | None = _days(90, "the online prediction log's rows")
    feedback: float | None = _days(365, "feedback (late labels) rows; the monitor's quality check needs them")
    telemetry: float | None = _days(90, "device heartbeats")
    quarantine: float | None = _days(30, "log rows no Parquet file could hold")
    batch_inputs: float | None = _days(90, "the samples of batch inputs")
    batch_runs: float | None = _days(365, "batch run records (ferry status shows the latest)")
    monitor_reports: float | None = _days(180, "Evidently drift reports of the monitor")
    monitor_history: float | None = _days(365, "judgements in the monitor's history")
    rollouts: float | None = _days(365, "rollout decisions' evidence")
    runs: float | None = _days(30, "retrain run directories (they hold copies of the training data)")


@dataclass
class Swept:
    """What one sweep removed (or would remove, on a dry run): per kind, the paths and their bytes."""

    cutoff: dict[str, str] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def add(self, kind: str, path: str, size: int) -> None:
        self.removed.setdefault(kind, []).append(path)
        self.bytes[kind] = self.bytes.get(kind, 0) + size

    def counts(self) -> dict[str, int]:
        return {kind: len(paths) for kind, paths in self.removed.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "cutoff": self.cutoff, "counts": self.counts(), "bytes": self.bytes}


# 2026-11-29 (a day folder), 20261129T230102 (a name), 2026-11-29T23:01:02 (a line's time)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_STAMP = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})(?:T(\d{2}):?(\d{2}):?(\d{2}))?")


def _dated(name: str) -> datetime | None:
    """The first date (and time) spelled in ``name``, as UTC; None when there is none."""
    match = _STAMP.search(name)
    if match is None:
        return None
    parts = [int(p) if p else 0 for p in match.groups()]
    try:
        return datetime(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], tzinfo=UTC)
    except ValueError:
        return None


def _modified(info: dict[str, Any]) -> datetime | None:
    for key in ("mtime", "LastModified", "last_modified", "updated"):
        value = info.get(key)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, str) and (when := _dated(value)) is not None:
            return when
    return None


def _entries(fs: Any, directory: str) -> list[dict[str, Any]]:
    if not storage.exists(fs, directory):
        return []
    found: list[dict[str, Any]] = fs.ls(directory, detail=True)
    return sorted(found, key=lambda e: str(e["name"]))


def _size(fs: Any, entry: dict[str, Any]) -> int:
    if entry.get("type") == "directory":
        return int(sum(fs.du(entry["name"], total=False).values())) if storage.exists(fs, entry["name"]) else 0
    return int(entry.get("size") or 0)


def _sweep_dir(fs: Any, directory: str, cutoff: datetime, kind: str, out: Swept) -> None:
    """Remove the entries of ``directory`` dated before ``cutoff``; a day folder goes once its whole day is."""
    for entry in _entries(fs, directory):
        path = str(entry["name"])
        name = path.rstrip("/").rsplit("/", 1)[-1]
        when = _dated(name) or _modified(entry)
        if when is None:
            continue
        if _DAY.fullmatch(name):
            when += timedelta(days=1)
        if when > cutoff:
            continue
        out.add(kind, path, _size(fs, entry))
        if not out.dry_run:
            fs.rm(path, recursive=entry.get("type") == "directory")


def _sweep_history(fs: Any, path: str, cutoff: datetime, out: Swept) -> None:
    if not storage.exists(fs, path):
        return
    lines = storage.read_bytes(fs, path).decode().splitlines()
    kept: list[str] = []
    for line in lines:
        try:
            when = _dated(str(json.loads(line).get("at", "")))
        except (json.JSONDecodeError, AttributeError):
            when = None
        if when is not None and when < cutoff:
            out.add("monitor_history", f"{path}#{when.isoformat()}", len(line) + 1)
        else:
            kept.append(line)
    if len(kept) != len(lines) and not out.dry_run:
        storage.atomic_write_bytes(fs, path, "".join(f"{line}\n" for line in kept).encode())


def _cutoff(now: datetime, days: float | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def _start(settings: RetentionSettings | None, now: datetime | None, dry_run: bool) -> tuple[Any, datetime, Swept]:
    settings = settings or RetentionSettings()
    now = now or datetime.now(UTC)
    out = Swept(dry_run=dry_run)
    for kind in KINDS:
        if (cut := _cutoff(now, getattr(settings, kind))) is not None:
            out.cutoff[kind] = cut.isoformat(timespec="seconds")
    return settings, now, out


def sweep(
    registry_url: str,
    settings: RetentionSettings | None = None,
    *,
    models: Iterable[str] | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Swept:
    """Remove every kept file of every model (or of ``models``) older than its kind's retention; returns what went
    (what would go, on a dry run)."""
    settings, now, out = _start(settings, now, dry_run)
    fs, root = storage.open_fs(registry_url)
    names = list(models) if models is not None else _models(fs, root)
    for model in names:
        for kind in ("predictions", "feedback", "telemetry"):
            if (cut := _cutoff(now, getattr(settings, kind))) is not None:
                _sweep_dir(fs, layout.online_dir(root, model, kind), cut, kind, out)
        if (cut := _cutoff(now, settings.quarantine)) is not None:
            for log in _entries(fs, layout.online_dir(root, model, "quarantine")):
                _sweep_dir(fs, str(log["name"]), cut, "quarantine", out)
        plain = {
            "batch_inputs": layout.batch_inputs_dir(root, model),
            "batch_runs": layout.batch_runs_dir(root, model),
            "monitor_reports": layout.monitor_path(root, model, "reports"),
            "rollouts": layout.monitor_path(root, model, "rollouts"),
        }
        for kind, directory in plain.items():
            if (cut := _cutoff(now, getattr(settings, kind))) is not None:
                _sweep_dir(fs, directory, cut, kind, out)
        if (cut := _cutoff(now, settings.monitor_history)) is not None:
            _sweep_history(fs, layout.monitor_path(root, model, "history.jsonl"), cut, out)
    return out


def sweep_runs(
    work_dir: str | Path,
    settings: RetentionSettings | None = None,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Swept:
    """Remove the retrain run directories under ``work_dir`` older than ``runs`` days (they hold data copies)."""
    settings, now, out = _start(settings, now, dry_run)
    cutoff = _cutoff(now, settings.runs)
    root = Path(work_dir)
    if cutoff is None or not root.is_dir():
        return out
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        when = _dated(run.name)
        if when is None or when >= cutoff:
            continue
        out.add("runs", str(run), sum(f.stat().st_size for f in run.rglob("*") if f.is_file()))
        if not dry_run:
            shutil.rmtree(run)
    return out


def _models(fs: Any, root: str) -> list[str]:
    return [str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in _entries(fs, layout.models_dir(root))]
