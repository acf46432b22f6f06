"""Checks of a retrain's inputs before anything starts: the schema loads, the data reads and matches it, the task
is settled and each class has the rows cross-validation needs.

``ferry train`` runs :func:`preflight` before it starts Prefect, so a wrong path or a broken file costs a second
and one line, not a server start and a traceback. The flow's own ingest applies the same rules again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ferry import data as data_mod
from ferry.schema import Schema
from ferry.settings import TrainSettings

__all__ = ["Preflight", "preflight"]


@dataclass(frozen=True)
class Preflight:
    """What the inputs turned out to be: the settled schema, the row count and, when inferred, how."""

    schema: Schema
    rows: int
    task_note: str | None


def preflight(
    data_url: str,
    schema_url: str,
    settings: TrainSettings | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> Preflight:
    """Load, read, validate and split as the retrain flow will; raises the same one-line FerryErrors it would."""
    from ferry.train import pipeline
    from ferry.train.estimators import resolve_estimator

    settings = settings or TrainSettings()
    schema = Schema.load(schema_url, storage_options=storage_options)
    if not schema.infers_task:  # the estimator is checked before the data is read
        resolve_estimator(settings, schema)
    raw = data_mod.read_table(data_url, storage_options=storage_options)
    schema, note = data_mod.resolve_task(raw, schema)
    typed: pd.DataFrame = data_mod.validate(raw, schema, require_target=True)
    from ferry.errors import ExportError
    from ferry.train.onnx_export import unconvertible_step

    unsupported = unconvertible_step(pipeline.build_pipeline(schema, resolve_estimator(settings, schema)))
    if unsupported is not None:
        raise ExportError(unsupported)
    part = pipeline.split(typed, schema, settings)
    if schema.is_classifier:
        pipeline.check_class_rows(typed[schema.target].to_numpy()[part.train_index], schema, settings.cv_folds)
    return Preflight(schema, len(typed), note)
