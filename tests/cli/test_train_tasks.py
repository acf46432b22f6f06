"""``ferry train`` on a multiclass and a regression CSV with only a schema file each: the real retrain flow on the
session's Prefect server, the gate, the promotion, and what the registered model answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import example_maker
from typer.testing import CliRunner

from ferry.cli import app
from ferry.data import to_onnx_inputs
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _write(example: str, path: Path, rows: int) -> Path:
    written: Path = example_maker(example).write_csv(path, rows)
    return written


def _train(*args: str) -> str:
    result = CliRunner().invoke(app, ["train", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "PROMOTED" in result.output
    return result.output


def _answers(registry: Registry, model: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    version = registry.get(registry.channel(model, "online/champion") or "", model=model)
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    return OnnxScorer(registry.read_bytes(version, "model.onnx")).rows(to_onnx_inputs(frame, schema))


def test_multiclass_csv_with_classes_left_to_discover(prefect_server: None, ferry_env: Path) -> None:
    data = _write("defects", ferry_env / "defects.csv", 800)
    doc = Schema.load(REPO / "examples/defects/schema.yaml").to_dict()
    del doc["task"], doc["target_classes"]  # the user declares neither: the levels come from the data
    schema = ferry_env / "defects.json"
    schema.write_text(json.dumps(doc))
    out = _train("--data", str(data), "--schema", str(schema), "--estimator", "logistic_regression")
    assert "task of 'defect' inferred: multiclass with 4 classes 'crack', 'dent', 'none', 'scratch'" in out
    assert "macro_f1" in out
    registry = Registry(str(ferry_env / "registry"))
    frame = pd.read_csv(data).head(3)
    answers = _answers(registry, "defects", frame)
    assert [sorted(a["probabilities"]) for a in answers] == [["crack", "dent", "none", "scratch"]] * 3
    assert all(abs(sum(a["probabilities"].values()) - 1) < 1e-5 for a in answers)


def test_regression_csv_with_the_default_estimator(prefect_server: None, ferry_env: Path) -> None:
    data = _write("demand", ferry_env / "demand.csv", 800)
    out = _train("--data", str(data), "--schema", str(REPO / "examples/demand/schema.yaml"))
    assert "rmse" in out
    assert "model.interval_coverage" in out
    registry = Registry(str(ferry_env / "registry"))
    answers = _answers(registry, "demand", pd.read_csv(data).head(3))
    for a in answers:
        assert a["lower"] < a["value"] < a["upper"]
        assert a["coverage"] == 0.9
