"""One monitor run as plain functions that hand each other references: gather, judge, judge quality, record.

- :func:`gather` reads what every source produced since its cursor (online predictions, batch inputs, edge
  heartbeats from the registry and from a folder collector), writes each source's new rows to a Parquet file in
  ``workdir`` and returns :class:`Gathered`: the files, row counts, versions and the cursors to save, never rows.
- :func:`judge_source` judges one gathered file against the reference of the version being watched and keeps its
  Evidently report in the registry.
- :func:`quality_of_versions` joins the labels that arrived (feedback and a labels file) with logged predictions:
  each version's quality on its task's metrics (:mod:`ferry.monitor.quality`).
- :func:`record` decides what to announce (:class:`~ferry.monitor.policy.Policy`), moves the cursors, appends the
  judgements to the history and saves the state.

The ``monitor`` flow wraps each in a task; it emits the events and artifacts, and keeps nothing itself.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ferry import status, storage
from ferry.errors import FerryError
from ferry.monitor.judging import judge
from ferry.monitor.policy import Announcement, Policy, Seen
from ferry.monitor.quality import check_labels, quality_by_version
from ferry.monitor.settings import MonitorSettings
from ferry.monitor.sketches import reference_of
from ferry.monitor.sources import (
    SourceData,
    batch_since,
    edge_since,
    feedback_since,
    logged_since,
    online_since,
    read_labels,
)
from ferry.monitor.state import MonitorState, append_history, keep_report
from ferry.registry import Registry
from ferry.schema import Schema

__all__ = ["Gathered", "SourceRef", "gather", "judge_source", "merge_cohorts", "quality_of_versions", "record"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class SourceRef:
    """One source's new rows, as a file: where it is, how many rows they stand for, and the cursor to save."""

    source: str
    path: str
    rows: int
    versions: dict[str, int]
    cursor: str | None

    def load(self) -> SourceData:
        return SourceData(self.source, storage.read_parquet(self.path), self.rows, dict(self.versions), self.cursor)


@dataclass
class Gathered:
    """What a run gathered: the sources' files, the devices that reported, the labels that arrived, new cursors."""

    sources: list[SourceRef] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    feedback: str | None = None
    cursors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Gathered:
        return cls(
            sources=[SourceRef(**s) for s in raw.get("sources", [])],
            devices=list(raw.get("devices", [])),
            feedback=raw.get("feedback"),
            cursors=dict(raw.get("cursors", {})),
        )


def merge_cohorts(sources: list[SourceData], more: list[SourceData]) -> list[SourceData]:
    """Sources from a folder collector join the registry's: same cohort name, rows side by side."""
    by = {s.source: s for s in sources}
    for s in more:
        old = by.get(s.source)
        if old is None:
            by[s.source] = s
            continue
        versions = dict(old.versions)
        for k, v in s.versions.items():
            versions[k] = versions.get(k, 0) + v
        frame = pd.concat([old.frame, s.frame], ignore_index=True)
        by[s.source] = SourceData(s.source, frame, old.rows + s.rows, versions, None)
    return list(by.values())


def _keep(data: SourceData, workdir: Path) -> SourceRef:
    path = workdir / f"{_UNSAFE.sub('-', data.source)}.parquet"
    storage.write_parquet(path, data.frame)
    return SourceRef(data.source, str(path), data.rows, dict(data.versions), data.cursor)


def gather(
    registry: Registry,
    model: str,
    schema: Schema,
    settings: MonitorSettings,
    workdir: Path,
    *,
    telemetry_folder: str | None = None,
) -> Gathered:
    """Read every source since its cursor into files under ``workdir``; remember the devices that reported."""
    workdir.mkdir(parents=True, exist_ok=True)
    cursors = MonitorState.load(registry, model).cursors
    found = Gathered()
    sources: list[SourceData] = []
    online = online_since(registry, model, cursors.get("online"), max_rows=settings.max_rows)
    feedback, feedback_cursor = feedback_since(registry, model, cursors.get("feedback"))
    if feedback_cursor:
        found.cursors["feedback"] = feedback_cursor
    if feedback is not None:
        found.feedback = str(workdir / "feedback.parquet")
        storage.write_parquet(found.feedback, feedback)
    if online is not None:
        sources.append(online)
    batch = batch_since(registry, model, cursors.get("batch"), max_rows=settings.max_rows)
    if batch is not None:
        sources.append(batch)
    edge, devices, edge_cursor = edge_since(registry, model, schema, cursors.get("edge"))
    sources += edge
    if telemetry_folder:
        more, more_devices, folder_cursor = edge_since(
            registry, model, schema, cursors.get("edge-folder"), folder=telemetry_folder
        )
        sources, devices = merge_cohorts(sources, more), devices + more_devices
        if folder_cursor:
            found.cursors["edge-folder"] = folder_cursor
    if edge_cursor:
        found.cursors["edge"] = edge_cursor
    if devices:
        status.remember_devices(registry, model, devices)
    found.devices = devices
    found.sources = [_keep(s, workdir) for s in sources]
    return found


def judge_source(
    registry: Registry, model: str, version_id: str, ref: SourceRef, settings: MonitorSettings, run: str
) -> dict[str, Any]:
    """Evidently drift (and quality, with labels) of one gathered source; its HTML report is kept in the registry."""
    reference, schema = reference_of(registry, registry.get(version_id, model=model))
    with tempfile.TemporaryDirectory(prefix="ferry-monitor-") as tmp:
        judgement = judge(ref.load(), reference, schema, settings, report_dir=Path(tmp), run=run)
        out = judgement.to_dict()
        if judgement.report is not None:
            out["report"] = keep_report(registry, model, Path(judgement.report))
    if judgement.input is not None:
        out["columns"] = [
            {"feature": c.feature, "method": c.method, "score": c.score, "threshold": c.threshold, "drifted": c.drifted}
            for c in judgement.input.columns
        ]
    return out


def quality_of_versions(
    registry: Registry,
    model: str,
    version_id: str,
    feedback: str | None,
    labels_url: str | None,
    settings: MonitorSettings,
) -> dict[str, dict[str, float]]:
    """Each version's quality on the labels that arrived (the gathered feedback file and a labels file), on the
    metrics of the task of ``version_id`` (the version watched). A labels file with a bad label is refused whole
    (DataError naming the row); feedback rows the service took but this schema cannot (classes changed since)
    are left out and counted as ``refused_feedback`` on every version's line."""
    schema = registry.schema(registry.get(version_id, model=model))
    parts, refused = [], 0
    if feedback:
        accepted = check_labels(storage.read_parquet(feedback), schema, "feedback", drop=True)
        refused = int(accepted.attrs.get("refused", 0))
        parts.append(accepted)
    if labels_url:
        parts.append(read_labels(labels_url, schema))
    labels = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if labels.empty:
        return {}
    logged = logged_since(registry, model, settings.label_lookback_days)
    declared = _declared_coverage(registry, model, logged) if schema.kind == "regression" else {}
    found = quality_by_version(
        logged, labels, schema, declared=declared, coverage_tolerance=settings.coverage_tolerance
    )
    if refused:
        for q in found.values():
            q["refused_feedback"] = float(refused)
    return found


def _declared_coverage(registry: Registry, model: str, logged: pd.DataFrame) -> dict[str, float]:
    """The interval coverage each logged regression version declares (its ``interval.json``)."""
    out: dict[str, float] = {}
    versions: list[str] = sorted(set(logged["version"].dropna().astype(str))) if "version" in logged.columns else []
    for vid in versions:
        try:
            v = registry.get(vid, model=model)
        except FerryError:  # a version removed since it answered: its coverage is unknown, not a finding
            continue
        if "interval.json" in v.files:
            out[vid] = float(json.loads(registry.read_bytes(v, "interval.json"))["coverage"])
    return out


def record(
    registry: Registry,
    model: str,
    version_id: str,
    gathered: Gathered,
    judged: list[dict[str, Any]],
    settings: MonitorSettings,
    now: datetime,
) -> list[Announcement]:
    """Decide what to announce, move the cursors past what was judged, append the history and save the state."""
    state = MonitorState.load(registry, model)
    state.cursors.update(gathered.cursors)
    verdicts = [Seen(j["source"], j["drifted"], j["fingerprint"]) for j in judged]
    announcements = Policy(settings).decide(state, verdicts, now)
    for s in gathered.sources:
        if s.cursor is not None:
            state.cursors[s.source] = s.cursor
    announced = {a.source for a in announcements if a.announce}
    entries = [
        {
            "at": now.isoformat(timespec="seconds"),
            "version": version_id,
            **{k: v for k, v in j.items() if k != "columns"},
        }
        | {"announced": j["source"] in announced}
        for j in judged
    ]
    append_history(registry, model, entries)
    state.save(registry, model)
    return announcements
