"""Judging one source: input drift over the features and prediction drift over the task's answers (a binary
model's positive-class score, a multiclass model's class distribution, a regressor's value distribution; see
:mod:`ferry.monitor.answers`), through :func:`ferry.gate.data_drift` (Evidently).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ferry import gate
from ferry.monitor.answers import drift_columns
from ferry.monitor.settings import MonitorSettings
from ferry.monitor.sketches import reference_sketch, sketch_frame
from ferry.monitor.sources import SourceData
from ferry.schema import Schema

__all__ = ["Judgement", "judge", "prediction_drift"]


@dataclass(frozen=True)
class Judgement:
    """One source judged against the reference."""

    source: str
    rows: int
    versions: dict[str, int]
    input: gate.DriftResult | None
    prediction: gate.DriftResult | None
    report: str | None
    skipped: str | None = None  # why the source was not judged (too few rows)

    @property
    def drifted(self) -> bool:
        return bool(self.input and self.input.drifted) or bool(self.prediction and self.prediction.drifted)

    @property
    def fingerprint(self) -> str:
        features = sorted(self.input.drifted_features) if self.input else []
        prediction = ["<prediction>"] if self.prediction and self.prediction.drifted else []
        return ",".join(features + prediction)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "versions": self.versions,
            "drifted": self.drifted,
            "drifted_share": self.input.drifted_share if self.input else None,
            "drifted_features": list(self.input.drifted_features) if self.input else [],
            "prediction_drift": None if self.prediction is None else self.prediction.drifted,
            "prediction_score": self.prediction.columns[0].score if self.prediction else None,
            "report": self.report,
            "skipped": self.skipped,
            "fingerprint": self.fingerprint,
        }


def judge(
    data: SourceData,
    reference: pd.DataFrame,
    schema: Schema,
    settings: MonitorSettings,
    *,
    report_dir: Path | None = None,
    run: str = "run",
) -> Judgement:
    """Evidently's input drift (and prediction drift when the source carries the task's prediction columns)."""
    if data.rows < settings.min_rows:
        why = f"{data.rows} new rows, fewer than min_rows={settings.min_rows}"
        return Judgement(data.source, data.rows, data.versions, None, None, None, skipped=why)
    edge = data.source.startswith("edge:")
    ref = sketch_frame([reference_sketch(reference, schema)], schema) if edge else reference
    html = None
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        html = report_dir / f"{run}-{data.source.replace(':', '-').replace('/', '-')}.html"
    drift = gate.input_drift(
        ref, data.frame, schema, drift_share=settings.drift_share, timeout_s=settings.timeout_s, html_path=html
    )
    prediction = prediction_drift(reference, data.frame, schema, timeout_s=settings.timeout_s)
    return Judgement(data.source, data.rows, data.versions, drift, prediction, str(html) if html else None)


def prediction_drift(
    reference: pd.DataFrame, current: pd.DataFrame, schema: Schema, *, timeout_s: float = 300.0
) -> gate.DriftResult | None:
    """Evidently's drift of the task's answers (:func:`~ferry.monitor.answers.drift_columns`), ``current`` against
    ``reference``; None when ``current`` carries no answers (edge sketches, samples kept before answers were)."""
    numeric, categorical = drift_columns(schema)
    columns = [*numeric, *categorical]
    if any(c not in current.columns for c in columns):
        return None
    answered = current.dropna(subset=columns)
    if answered.empty:
        return None
    return gate.data_drift(reference, answered, numeric=numeric, categorical=categorical, timeout_s=timeout_s)
