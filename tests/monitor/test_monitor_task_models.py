"""The monitor per task on the trained example models (``defects``: multiclass, ``demand``: regression): the
reference carries each version's own answers, prediction drift follows the class or value distribution of what the
model answered online, and a batch run's kept sample carries the task's prediction columns for the monitor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import copy_clean, example_maker
from task_logs import log_answers

from ferry import batch, monitor
from ferry.data import to_onnx_inputs, validate
from ferry.registry import Registry
from ferry.scoring import OnnxScorer

pytestmark = pytest.mark.integration  # the session's trained task models, and Evidently reports on their features

SETTINGS = monitor.MonitorSettings(min_rows=100)
COLUMNS = {
    "defects": ["prediction", "prob_none", "prob_scratch", "prob_dent", "prob_crack"],
    "demand": ["value", "lower", "upper"],
}
MOVED = {  # what production sends when the world moved: faster presses (scratches), or promotions every day
    "defects": lambda f: f.assign(speed=f["speed"] + 0.8),
    "demand": lambda f: f.assign(promo=1, price=f["price"] * 0.5),
}


@pytest.fixture(scope="module")
def registry(task_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Registry:
    reg: Registry = copy_clean(task_models["registry"].url, tmp_path_factory.mktemp("monitor-tasks") / "registry")
    return reg


def answered(registry: Registry, model: str, frame: pd.DataFrame) -> None:
    """Log ``frame`` as the online service answers it with the champion."""
    version = registry.get(registry.channel(model, "online/champion") or "", model=model)
    schema = registry.schema(version)
    typed = validate(frame, schema, require_target=False)
    rows = OnnxScorer(registry.read_bytes(version, "model.onnx")).rows(to_onnx_inputs(typed, schema))
    records = frame[list(schema.feature_names)].to_dict("records")
    log_answers(registry, model, version.id, records, rows)


@pytest.mark.parametrize("model", ["defects", "demand"])
def test_prediction_drift_follows_what_each_task_answers(registry: Registry, model: str) -> None:
    version = registry.get(registry.channel(model, "online/champion") or "", model=model)
    reference, schema = monitor.reference_of(registry, version)
    assert set(COLUMNS[model]) <= set(reference.columns)
    make = example_maker(model).make_frame
    answered(registry, model, make(400, seed=105))
    calm = monitor.online_since(registry, model, None, max_rows=5000)
    assert calm is not None
    quiet = monitor.judge(calm, reference, schema, SETTINGS)
    assert quiet.prediction is not None
    assert not quiet.prediction.drifted, quiet.to_dict()
    answered(registry, model, MOVED[model](make(400, seed=102)))
    moved = monitor.online_since(registry, model, calm.cursor, max_rows=5000)
    assert moved is not None
    judged = monitor.judge(moved, reference, schema, SETTINGS)
    assert judged.prediction is not None
    assert judged.prediction.drifted
    assert judged.fingerprint.endswith("<prediction>")
    assert [c.feature for c in judged.prediction.columns] == monitor.prediction_columns(schema)[:1]


@pytest.mark.parametrize("model", ["defects", "demand"])
def test_a_batch_run_keeps_its_sample_with_the_tasks_answers(registry: Registry, model: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    example_maker(model).make_frame(600, seed=103).to_parquet(tmp_path / "in" / "part.parquet", index=False)
    summary = batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry, model=model)
    data = monitor.batch_since(registry, model, None, max_rows=50_000)
    assert data is not None
    assert set(COLUMNS[model]) <= set(data.frame.columns)
    version = registry.get(summary.version, model=model)
    reference, schema = monitor.reference_of(registry, version)
    judged = monitor.judge(data, reference, schema, SETTINGS)
    assert judged.prediction is not None
    assert not judged.prediction.drifted  # the same world the model was trained on
