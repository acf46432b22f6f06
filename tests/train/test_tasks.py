"""Multiclass and regression through the retrain steps (no Prefect): per-task metrics, ONNX parity, the scorer's
answer, the gate's per-task checks, the stored interval, and the bad inputs each refused before anything is kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import example_maker, loop

from ferry.data import to_onnx_inputs
from ferry.errors import ConfigError, DataValidationError, ExportError, TrainingError
from ferry.gate.evidently_adapter import model_quality
from ferry.registry import ModelVersion, Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer, Scores, ValueScores
from ferry.settings import GateSettings, TrainSettings
from ferry.train import steps as core
from ferry.train.preflight import preflight

REPO = Path(__file__).resolve().parents[2]


DEFECTS, DEMAND = example_maker("defects"), example_maker("demand")
SCHEMAS = {"defects": REPO / "examples/defects/schema.yaml", "demand": REPO / "examples/demand/schema.yaml"}


@pytest.fixture
def trained(task_models: dict[str, Any]) -> dict[str, Any]:
    return task_models


def _checks(gate: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in gate["checks"]}


def _holdout(registry: Registry, version: ModelVersion) -> tuple[Schema, pd.DataFrame]:
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    frame = pd.read_parquet(registry.file_url(version, "reference.parquet"))
    return schema, frame


@pytest.mark.integration
def test_multiclass_model_is_gated_per_class_and_promoted(trained: dict[str, Any]) -> None:
    run = trained["defects"]
    assert run["gate"]["passed"], run["gate"]["reasons"]
    assert [m["channel"] for m in run["moved"]] == ["online/champion"]
    version: ModelVersion = run["version"]
    metrics = version.info["metrics"]
    for key in (
        "macro_f1",
        "weighted_f1",
        "log_loss",
        "roc_auc_ovr",
        "f1[scratch]",
        "precision[crack]",
        "recall[dent]",
    ):
        assert key in metrics
    checks = _checks(run["gate"])
    assert checks["onnx.parity_max_abs_diff"]["observed"] <= 1e-5  # every class probability
    assert checks["onnx.parity_label_agreement"]["observed"] == 1.0
    assert checks["model.macro_f1_floor"]["source"] == "evidently"
    assert checks["behaviour.direction[speed]"]["detail"].startswith("speed +")
    assert "P(scratch)" in checks["behaviour.direction[speed]"]["detail"]
    assert checks["behaviour.batch_invariance"]["passed"]
    snapshot = json.loads(trained["registry"].read_bytes(version, "gate.evidently.json"))
    assert any(m["metric_name"].startswith("F1ByLabel") for m in snapshot["metrics"])  # the multiclass preset


@pytest.mark.integration
def test_regression_model_carries_its_interval_everywhere(trained: dict[str, Any]) -> None:
    run = trained["demand"]
    assert run["gate"]["passed"], run["gate"]["reasons"]
    registry: Registry = trained["registry"]
    version: ModelVersion = run["version"]
    interval = json.loads(registry.read_bytes(version, "interval.json"))
    assert interval["coverage"] == 0.9
    assert interval["calibration_rows"] + interval["check_rows"] == int(version.info["metrics"]["rows"])
    checks = _checks(run["gate"])
    # 70 check rows: two binomial standard errors (0.072) are more than the 0.05 the setting allows
    assert checks["model.interval_coverage"]["threshold"] == ">= 0.8283"
    assert checks["model.interval_coverage"]["passed"]
    assert checks["onnx.parity_max_rel_diff"]["observed"] <= 1e-4
    assert checks["model.r2_floor"]["passed"]
    assert {"behaviour.direction[price]", "behaviour.direction[promo]"} <= set(checks)
    for key in ("rmse", "mae", "r2", "mape", "interval_coverage", "interval_width"):
        assert key in version.info["metrics"]
    schema, frame = _holdout(registry, version)
    scorer = OnnxScorer(registry.read_bytes(version, "model.onnx"))
    answer = scorer.answer(to_onnx_inputs(frame.head(20), schema))
    assert isinstance(answer, ValueScores)
    half = np.float32(interval["half_width"])
    assert np.array_equal(answer.upper, answer.values + half)  # the bounds are in the ONNX graph itself
    assert np.array_equal(answer.lower, answer.values - half)
    assert answer.coverage == 0.9


@pytest.mark.integration
def test_scorer_output_contract_per_task(trained: dict[str, Any]) -> None:
    registry: Registry = trained["registry"]
    schema, frame = _holdout(registry, trained["defects"]["version"])
    scorer = OnnxScorer(registry.read_bytes(trained["defects"]["version"], "model.onnx"))
    inputs = to_onnx_inputs(frame.head(5), schema)
    assert scorer.task == "multiclass"
    assert scorer.classes == ("none", "scratch", "dent", "crack")
    scores = scorer.score(inputs)
    assert isinstance(scores, Scores)
    assert scores.probabilities.shape == (5, 4)
    rows = scorer.rows(inputs)
    assert set(rows[0]) == {"label", "probabilities"}
    assert list(rows[0]["probabilities"]) == ["none", "scratch", "dent", "crack"]
    for row, i in zip(rows, scores.labels, strict=True):
        assert row["label"] == schema.target_classes[int(i)]
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    schema, frame = _holdout(registry, trained["demand"]["version"])
    scorer = OnnxScorer(registry.read_bytes(trained["demand"]["version"], "model.onnx"))
    inputs = to_onnx_inputs(frame.head(3), schema)
    assert scorer.task == "regression"
    assert set(scorer.rows(inputs)[0]) == {"value", "lower", "upper", "coverage"}
    with pytest.raises(ValueError, match="regression model"):
        scorer.score(inputs)


@pytest.mark.integration
def test_champion_of_another_task_fails_the_gate_closed(trained: dict[str, Any], tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "reg"))
    loop(
        trained["demand"]["data"],
        SCHEMAS["demand"],
        registry,
        tmp_path / "runs",
        train=TrainSettings(estimator="ridge"),
    )
    doc = Schema.load(SCHEMAS["defects"]).to_dict() | {"name": "demand"}
    other = tmp_path / "defects-as-demand.json"
    other.write_text(json.dumps(doc))
    train = TrainSettings(estimator="logistic_regression")
    _, gate, moved = loop(trained["defects"]["data"], other, registry, tmp_path / "runs", train=train)
    assert not gate["passed"]
    assert moved == []
    assert "is a regression model and the candidate multiclass" in str(gate["error"])


@pytest.mark.integration  # four Evidently reports: kept out of the fast set
def test_champion_comparison_runs_in_each_metrics_direction() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(100, 10, 300)
    good, bad = y + rng.normal(0, 2, 300), y + rng.normal(0, 6, 300)
    settings = GateSettings()
    better, _ = model_quality(y, good, settings, task="regression", champion_answers=bad, champion="v1")
    worse, champ = model_quality(y, bad, settings, task="regression", champion_answers=good, champion="v1")
    vs = {c.name: c for c in better} | {f"worse.{c.name}": c for c in worse}
    assert vs["model.rmse_vs_champion"].passed  # lower RMSE than the champion passes
    assert vs["model.rmse_vs_champion"].threshold.startswith("<=")
    assert not vs["worse.model.rmse_vs_champion"].passed
    assert champ["rmse"] == pytest.approx(float(np.sqrt(np.mean((good - y) ** 2))), rel=1e-6)
    k = 3
    labels = rng.integers(0, k, 300)
    sharp = np.full((300, k), 0.1)
    sharp[np.arange(300), labels] = 0.8
    blunt = rng.dirichlet(np.ones(k), 300)
    passed, _ = model_quality(labels, sharp, settings, task="multiclass", champion_answers=blunt, champion="v1")
    failed, _ = model_quality(labels, blunt, settings, task="multiclass", champion_answers=sharp, champion="v1")
    assert {c.name: c.passed for c in passed}["model.macro_f1_vs_champion"]
    assert not {c.name: c.passed for c in failed}["model.macro_f1_vs_champion"]


@pytest.fixture(scope="module")
def defects_frame() -> pd.DataFrame:
    frame: pd.DataFrame = DEFECTS.make_frame(700)
    return frame


def _rare_crack(frame: pd.DataFrame) -> pd.DataFrame:
    """Two cracks: one goes to the holdout, one is left to train on."""
    cracks = frame.index[frame["defect"] == "crack"]
    return frame.assign(defect=frame["defect"].where(~frame.index.isin(cracks[2:]), "none"))


@pytest.mark.parametrize(
    ("change", "error", "named"),
    [
        (lambda f: f.assign(defect=f["defect"].where(f.index != 3, "smudge")), DataValidationError, "'smudge'"),
        (lambda f: f.assign(defect="none"), DataValidationError, "all 700 rows have the class 'none'"),
        (_rare_crack, TrainingError, "class 'crack' has 1 training row(s)"),
    ],
    ids=["label-outside-classes", "constant-target", "class-too-rare-for-cv"],
)
def test_bad_multiclass_input_is_refused_before_anything_starts(
    defects_frame: pd.DataFrame, tmp_path: Path, change: Any, error: type[Exception], named: str
) -> None:
    bad = tmp_path / "bad.csv"
    change(defects_frame).to_csv(bad, index=False)
    with pytest.raises(error) as info:
        preflight(str(bad), str(SCHEMAS["defects"]))
    assert named in str(info.value)
    assert "\n" not in str(info.value)
    assert "defect" in str(info.value)


@pytest.mark.parametrize(
    ("values", "rule"),
    [([np.nan, 1.0], "target_not_null"), ([np.inf, 1.0], "target_finite"), (["plenty", "12"], "target_numeric")],
    ids=["nan-target", "inf-target", "string-target"],
)
def test_bad_regression_targets_write_nothing(tmp_path: Path, values: list[Any], rule: str) -> None:
    frame = DEMAND.make_frame(200)
    frame["units"] = frame["units"].astype(object)
    frame.loc[[4, 9], "units"] = values
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    run = core.new_run_dir(tmp_path / "runs")
    with pytest.raises(DataValidationError) as info:
        core.ingest(str(bad), str(SCHEMAS["demand"]), run)
    assert (info.value.column, info.value.rule) == ("units", rule)
    assert "row id=D00004" in str(info.value)
    assert list(run.iterdir()) == []


@pytest.mark.integration  # a cross-validated search and an export: kept out of the fast set
def test_estimator_by_import_path_with_params_and_grid(tmp_path: Path, defects_frame: pd.DataFrame) -> None:
    config = tmp_path / "extra_trees.yaml"
    config.write_text(
        "estimator: sklearn.ensemble.ExtraTreesClassifier\nparams: {n_estimators: 20}\ngrid: {max_depth: [4, 8]}\n"
    )
    data = tmp_path / "defects.csv"
    defects_frame.to_csv(data, index=False)
    settings = TrainSettings(estimator_config=str(config))
    run = core.new_run_dir(tmp_path / "runs")
    core.ingest(str(data), str(SCHEMAS["defects"]), run)
    core.split_data(run, settings)
    info = core.train_candidate(run, settings)
    assert info["estimator"] == "sklearn.ensemble.ExtraTreesClassifier"
    assert info["cv_metric"] == "macro_f1"
    assert len(info["cv_results"]) == 2
    core.evaluate_candidate(run, settings)
    core.export_onnx(run)
    assert core.check_parity(run, GateSettings()).passed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("estimator: sklearn.neighbors.NearestCentroid\n", "step 'clf' (NearestCentroid) has no ONNX converter; use"),
        ("estimator: sklearn.linear_model.Ridge\n", "is not a classifier, but the task is multiclass"),
        ("estimator: os.system\n", "is not an import path of a scikit-learn estimator"),
        ("estimator: sklearn.ensemble.ExtraTreesClassifier\ngrid: {depth: [1]}\n", "has no parameter 'depth'"),
    ],
    ids=["unconvertible", "wrong-task", "not-sklearn", "unknown-param"],
)
def test_bad_estimator_configs_are_refused_before_training(
    tmp_path: Path, defects_frame: pd.DataFrame, text: str, message: str
) -> None:
    config = tmp_path / "est.yaml"
    config.write_text(text)
    data = tmp_path / "defects.csv"
    defects_frame.to_csv(data, index=False)
    with pytest.raises((ConfigError, ExportError)) as info:
        preflight(str(data), str(SCHEMAS["defects"]), TrainSettings(estimator_config=str(config)))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_shortcut_of_the_wrong_task_is_named() -> None:
    with pytest.raises(ConfigError, match="estimator 'logistic_regression' does not fit a regression task"):
        preflight("unused.csv", str(SCHEMAS["demand"]), TrainSettings(estimator="logistic_regression"))
