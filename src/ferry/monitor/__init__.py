"""Monitoring: what production produced since the last run, compared with the champion's reference, and the staged
rollout of a challenger. Nothing here imports Prefect: the ``monitor`` flow emits the events and artifacts.

| module | what lives there |
|---|---|
| :mod:`~ferry.monitor.settings` | :class:`MonitorSettings` (``FERRY_MONITOR_*``) |
| :mod:`~ferry.monitor.sources` | online predictions, feedback, batch inputs and edge heartbeats since a cursor |
| :mod:`~ferry.monitor.answers` | the prediction columns per task, and which of them prediction drift compares |
| :mod:`~ferry.monitor.sketches` | the reference, and the sketches devices send instead of rows |
| :mod:`~ferry.monitor.cohorts` | a cohort's heartbeat sketches merged into one as they stream, in bounded memory |
| :mod:`~ferry.monitor.judging` | judging one source: input and prediction drift (Evidently, through the gate) |
| :mod:`~ferry.monitor.quality` | quality from late labels per task, and the regression interval's coverage |
| :mod:`~ferry.monitor.policy` | which drift is news, and which news may ask for a retrain |
| :mod:`~ferry.monitor.state` | cursors, history and reports kept between runs |
| :mod:`~ferry.monitor.run` | one monitor run: gather (as files), judge, quality, record; what the flow wraps |
| :mod:`~ferry.monitor.rollout` | the staged rollout: the challenger judged on live traffic, promoted or rolled back |
"""

from __future__ import annotations

from ferry.monitor.answers import CLASS, PREDICTION, VALUE, answer_columns, drift_columns, prediction_columns
from ferry.monitor.cohorts import CohortSketch
from ferry.monitor.judging import Judgement, judge, prediction_drift
from ferry.monitor.policy import Announcement, Policy, Seen, Verdict
from ferry.monitor.quality import check_labels, coverage_findings, label_metrics, quality_by_version
from ferry.monitor.rollout import Evidence, RolloutSettings, apply, assess
from ferry.monitor.run import Gathered, SourceRef, gather, judge_source, merge_cohorts, quality_of_versions, record
from ferry.monitor.settings import MonitorSettings
from ferry.monitor.sketches import QUANTILES, SKETCH_POINTS, reference_of, reference_sketch, sketch_frame
from ferry.monitor.sources import (
    SourceData,
    batch_since,
    edge_since,
    feedback_since,
    heartbeat_batches,
    logged_since,
    online_logs_since,
    online_since,
    read_labels,
    record_batch_input,
)
from ferry.monitor.state import MonitorState, append_history, history, keep_report

__all__ = [
    "CLASS",
    "PREDICTION",
    "QUANTILES",
    "SKETCH_POINTS",
    "VALUE",
    "Announcement",
    "CohortSketch",
    "Evidence",
    "Gathered",
    "Judgement",
    "MonitorSettings",
    "MonitorState",
    "Policy",
    "RolloutSettings",
    "Seen",
    "SourceData",
    "SourceRef",
    "Verdict",
    "answer_columns",
    "append_history",
    "apply",
    "assess",
    "batch_since",
    "check_labels",
    "coverage_findings",
    "drift_columns",
    "edge_since",
    "feedback_since",
    "gather",
    "heartbeat_batches",
    "history",
    "judge",
    "judge_source",
    "keep_report",
    "label_metrics",
    "logged_since",
    "merge_cohorts",
    "online_logs_since",
    "online_since",
    "prediction_columns",
    "prediction_drift",
    "quality_by_version",
    "quality_of_versions",
    "read_labels",
    "record",
    "record_batch_input",
    "reference_of",
    "reference_sketch",
    "sketch_frame",
]
