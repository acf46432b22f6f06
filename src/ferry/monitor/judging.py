"""Judging one source: input drift over the features and prediction drift over the positive class's score, through
:func:`ferry.gate.data_drift` (Evidently), and each version's quality on the labels that arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferry import gate
from ferry.monitor.settings import MonitorSettings
from ferry.monitor.sketches import PREDICTION, reference_sketch, sketch_frame
from ferry.monitor.sources import SourceData
from ferry.schema import Schema

__all__ = ["Judgement", "judge", "label_metrics", "quality_by_version"]


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
    """Evidently's input drift (and prediction drift when ``p_positive`` is known) of one source."""
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
    prediction = None
    if PREDICTION in data.frame.columns and data.frame[PREDICTION].notna().any():
        prediction = gate.data_drift(
            reference, data.frame.dropna(subset=[PREDICTION]), numeric=[PREDICTION], timeout_s=settings.timeout_s
        )
    return Judgement(data.source, data.rows, data.versions, drift, prediction, str(html) if html else None)


def label_metrics(joined: pd.DataFrame, positive: str) -> dict[str, float]:
    """Labelled count, accuracy and (with both classes present) ROC AUC of predictions joined with labels."""
    from sklearn.metrics import roc_auc_score

    y = joined["label"].astype(str)
    truth = (y == positive).to_numpy()
    pred = (joined["prediction"].astype(str) == positive).to_numpy()
    out: dict[str, float] = {"labelled": float(len(joined)), "accuracy": float((pred == truth).mean())}
    if len(set(truth.tolist())) == 2:
        out["roc_auc"] = float(roc_auc_score(truth, joined[PREDICTION].to_numpy(dtype=np.float64)))
    return out


def quality_by_version(predictions: pd.DataFrame, labels: pd.DataFrame, positive: str) -> dict[str, dict[str, float]]:
    """Each version's quality on the labelled predictions it made (a shadow version's too, as ``<id> (shadow)``)."""
    if predictions.empty or labels.empty:
        return {}
    joined = predictions.merge(labels[["prediction_id", "label"]], on="prediction_id", how="inner")
    out: dict[str, dict[str, float]] = {}
    role = joined["role"] if "role" in joined.columns else pd.Series("answer", index=joined.index)
    for (version, r), part in joined.groupby([joined["version"], role]):
        out[f"{version} (shadow)" if r == "shadow" else str(version)] = label_metrics(part, positive)
    return out
