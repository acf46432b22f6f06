"""Batch output per task: a multiclass model writes its class and a probability column per class, a regressor its
value and interval, each equal to what OnnxScorer answers for the same rows; with ``--explain``, each task's
explanation columns, equal to what the version's explainer answers for the same rows."""

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
from ferry.explain import batch_columns, load_explainer
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer, Scores

pytestmark = pytest.mark.integration  # uses the session's trained task models (the whole gate, with Evidently)


def score_head(
    task_models: dict[str, Any], model: str, where: Path, *, rows: int, batch_rows: int, **options: Any
) -> tuple[Registry, Any, pd.DataFrame, batch.RunSummary]:
    """The first ``rows`` rows of ``model``'s data scored into ``where / "out"``: registry, version, rows, summary."""
    registry: Registry = task_models["registry"]
    frame = pd.read_csv(task_models[model]["data"]).head(rows)
    (where / "in").mkdir()
    frame.to_parquet(where / "in" / "part-0.parquet")
    settings = batch.BatchSettings(batch_rows=batch_rows, drift=False)
    summary = batch.score(str(where / "in"), str(where / "out"), registry, model=model, settings=settings, **options)
    return registry, task_models[model]["version"], frame, summary


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
    registry, version, frame, _ = score_head(task_models, model, tmp_path, rows=300, batch_rows=128)
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


@pytest.mark.parametrize(("model", "classifier"), [("defects", True), ("demand", False)])
def test_batch_explanations_speak_the_task(
    task_models: dict[str, Any], tmp_path: Path, model: str, classifier: bool
) -> None:
    # record batches of 8 rows: onnxruntime sees other row counts than in the one-row calls below
    registry, version, frame, summary = score_head(task_models, model, tmp_path, rows=20, batch_rows=8, explain=True)
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    k = min(5, len(schema.feature_names))
    assert summary.explain == {"top_k": k, "class": None}
    id_column = "part_id" if model == "defects" else "day_id"
    got = read_scores(tmp_path / "out").set_index(id_column).loc[frame[id_column]]
    # the explainer on each row alone, as a single record is explained online: onnxruntime's float32 answer for a
    # row may change in its last bit with the rows beside it in one call, so batch explains rows one by one too
    inputs = to_onnx_inputs(validate(frame, schema, require_target=False), schema)
    explainer = load_explainer(registry, version)
    alone = [
        batch_columns(explainer.explain({n: x[i : i + 1] for n, x in inputs.items()}, top_k=k), classifier=classifier)
        for i in range(len(frame))
    ]
    want = {name: np.concatenate([row[name] for row in alone]) for name in alone[0]}
    names = list(want)
    assert names[: 3 if classifier else 2] == (["explained_class"] if classifier else []) + [
        "explained_value",
        "base_value",
    ]
    assert list(got.columns)[-len(names) :] == names
    for name, values in want.items():
        assert got[name].tolist() == values.tolist(), name
    attributions = got[[f"attribution_{f}" for f in schema.feature_names]].to_numpy()
    gap = attributions.sum(axis=1) - (got["explained_value"] - got["base_value"]).to_numpy()
    assert np.abs(gap).max() <= 1e-6
    if classifier:  # the predicted class is explained
        assert got["explained_class"].tolist() == [schema.target_classes[i] for i in got["prediction"]]
    else:  # a regressor's value is explained
        assert np.abs(got["explained_value"].to_numpy() - got["value"].to_numpy()).max() <= 1e-4
