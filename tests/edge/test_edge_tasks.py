"""The device's model per task, through its plain functions: a bundle of a multiclass model (``examples/defects``)
and of a regressor (``examples/demand``) answers on the device what the online service answers, and its self-test
checks the golden outputs of its task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ferry_edge.bundle import unpack
from ferry_edge.model import EdgeModel, Prediction, ValuePrediction
from ferry_edge.selftest import check

from ferry.cli.parity import records
from ferry.online.holder import ModelHolder
from ferry.online.predict import predict
from ferry.publish.bundle import build_bundle


def _installed(task_models: dict[str, Any], name: str, tmp_path: Path) -> EdgeModel:
    registry = task_models["registry"]
    bundle = build_bundle(registry, task_models[name]["version"])
    unpack(bundle.data, tmp_path / name)
    return EdgeModel(tmp_path / name)


@pytest.mark.parametrize("name", ["defects", "demand"])
def test_the_device_answers_what_the_online_service_answers(
    task_models: dict[str, Any], tmp_path: Path, name: str
) -> None:
    model = _installed(task_models, name, tmp_path)
    holder = ModelHolder(task_models["registry"], name, "online/champion")
    loaded = holder.refresh()
    assert loaded is not None
    rows = records(pd.read_csv(task_models[name]["data"]).head(60), loaded.schema)
    online = [p.model_dump(exclude={"prediction_id"}) for p in predict(loaded, rows).predictions]
    device = model.predict(rows)
    assert [{k: v for k, v in p.to_dict().items() if k != "version"} for p in device] == online
    assert {p.version for p in device} == {loaded.id}
    if name == "defects":
        assert model.task == "multiclass"
        assert all(isinstance(p, Prediction) for p in device)
        assert {str(p.prediction) for p in device} <= {"none", "scratch", "dent", "crack"}  # type: ignore[union-attr]
    else:
        assert model.task == "regression"
        assert all(isinstance(p, ValuePrediction) and p.lower < p.value < p.upper for p in device)


@pytest.mark.parametrize(
    ("name", "golden", "problem"),
    [
        ("defects", {"labels": 0}, "golden labels differ"),
        ("defects", {"probabilities": 0}, "golden outputs differ"),
        ("demand", {"value": 1}, "golden value differs"),
        ("demand", {"upper": 2}, "golden upper differs"),
    ],
)
def test_the_self_test_checks_the_golden_outputs_of_the_task(
    task_models: dict[str, Any], tmp_path: Path, name: str, golden: dict[str, int], problem: str
) -> None:
    model = _installed(task_models, name, tmp_path)
    report = check(model.directory, budget_ms=10_000)
    assert report["ok"], report
    manifest_path = model.directory / "bundle.json"
    manifest = json.loads(manifest_path.read_text())
    ((key, row),) = golden.items()
    if key == "labels":
        manifest["golden"]["labels"][row] = (manifest["golden"]["labels"][row] + 1) % 4
    elif key == "probabilities":
        manifest["golden"]["probabilities"][row][0] += 1e-3
    else:
        manifest["golden"][key][row] *= 1.001  # a relative change: the tolerance fits any target's scale
    manifest_path.write_text(json.dumps(manifest))
    report = check(model.directory, budget_ms=10_000)
    assert report["outcome"] == "failed"
    assert any(problem in p for p in report["problems"]), report
