"""Batch output per task: a multiclass model writes its class and a probability column per class, a regressor its
value and interval, each equal to what OnnxScorer answers for the same rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from batch_support import read_scores

from ferry import batch
from ferry.data import to_onnx_inputs, validate
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer, Scores

pytestmark = pytest.mark.integration  # uses the session's trained task models (the whole gate, with Evidently)


@pytest.mark.parametrize(
    ("model", "columns"),
    [
        ("defects", ["prediction", "prob_none", "prob_scratch", "prob_dent", "prob_crack"]),
        ("demand", ["value", "lower", "upper"]),
    ],
)
def test_batch_output_speaks_the_task(
    task_models: dict[str, Any], tmp_path: Path, model: str, columns: list[str]
) -> None:
    registry: Registry = task_models["registry"]
    version = task_models[model]["version"]
    frame = pd.read_csv(task_models[model]["data"]).head(300)
    (tmp_path / "in").mkdir()
    frame.to_parquet(tmp_path / "in" / "part-0.parquet")
    settings = batch.BatchSettings(batch_rows=128, drift=False)
    batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry, model=model, settings=settings)
    got = read_scores(tmp_path / "out")
    id_column = "part_id" if model == "defects" else "day_id"
    assert list(got.columns) == [id_column, *columns, "model_version", "scored_at"]
    assert set(got["model_version"]) == {version.id}
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    got = got.set_index(id_column).loc[frame[id_column]]
    answer = OnnxScorer(registry.read_bytes(version, "model.onnx")).answer(
        to_onnx_inputs(validate(frame, schema, require_target=False), schema)
    )
    if isinstance(answer, Scores):
        assert np.array_equal(got[columns[1:]].to_numpy(), answer.probabilities)
        assert np.array_equal(got["prediction"].to_numpy(), answer.labels)
    else:
        assert model == "demand"
        for name, values in (("value", answer.values), ("lower", answer.lower), ("upper", answer.upper)):
            assert np.array_equal(got[name].to_numpy(), values)
