"""The retrain steps as plain functions (the flow only wires them): end to end, gate verdicts, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import copy_registry, loop

from ferry import demo_data
from ferry.errors import DataError, DataFormatError, DataValidationError
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.settings import GateSettings, TrainSettings
from ferry.train import steps as core


@pytest.fixture(scope="module")
def churn_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("churn")
    schema = root / "schema.yaml"
    schema.write_text(demo_data.churn_schema().dump_yaml())
    return {
        "schema": schema,
        "base": demo_data.write_demo(root / "base", n_rows=6000, seed=1, drift=0.0, fmt="parquet"),
        "drifted": demo_data.write_demo(root / "drifted", n_rows=6000, seed=2, drift=0.8, fmt="csv"),
    }


def test_first_model_is_promoted_and_its_evidence_registered(churn_champion: dict[str, str]) -> None:
    """The session's champion is a first model trained by the same steps on an empty registry (read-only here)."""
    registry = Registry(churn_champion["registry"])
    version = registry.get(churn_champion["version"])
    gate = json.loads(registry.read_bytes(version, "gate.json"))
    assert gate["passed"], gate["reasons"]
    assert gate["champion"] is None
    assert registry.channel("churn", "online/champion") == version.id
    [record] = registry.audit("churn")
    assert (record.channel, record.to_version, record.from_version) == ("online/champion", version.id, None)
    files = set(version.files)
    assert {"model.onnx", "model.skops", "schema.json", "reference.parquet", "metrics.json", "gate.json"} <= files
    assert {"gate.html", "data_quality.html", "lineage.json", "parity.json"} <= files
    assert {"gate.evidently.json", "data_quality.evidently.json"} <= files  # Evidently's own snapshots
    snapshot = json.loads(registry.read_bytes(version, "gate.evidently.json"))
    assert any("RocAuc" in m["metric_name"] for m in snapshot["metrics"])
    assert registry.verify_version(version) == []
    lineage = json.loads(registry.read_bytes(version, "lineage.json"))
    assert lineage["data"]["sha256"] == core.data_mod.sha256_of(Path(churn_champion["data"]))
    assert lineage["code_revision"] == "test"
    assert lineage["libraries"]["scikit-learn"]
    reference = pd.read_parquet(registry.file_url(version, "reference.parquet"))
    assert "email" not in reference.columns
    assert "phone" not in reference.columns
    schema = Schema.load(churn_champion["schema"])
    assert schema.id == "customer_id"
    assert schema.id not in reference.columns  # kept as long as the version serves: no ids at all
    names = {c["name"] for c in gate["checks"]}
    assert {"onnx.parity_max_abs_diff", "model.roc_auc_floor", "behaviour.batch_invariance"} <= names
    assert "data.missing_share[satisfaction_score]" in names


def test_drifted_retrain_is_compared_with_the_champion(
    churn_files: dict[str, Path], churn_champion: dict[str, str], tmp_path: Path
) -> None:
    registry = copy_registry(churn_champion, tmp_path / "reg")
    first = registry.get(churn_champion["version"])
    second, gate, _ = loop(churn_files["drifted"], churn_files["schema"], registry, tmp_path / "runs")
    assert gate["champion"] == first.id
    vs = [c for c in gate["checks"] if c["name"] == "model.roc_auc_vs_champion"]  # type: ignore[attr-defined]
    assert len(vs) == 1
    # its model card puts the champion's metrics on the same holdout beside its own
    card = json.loads(registry.read_bytes(second, "model_card.json"))
    assert card["champion"] == first.id
    champion_metrics = json.loads(registry.read_bytes(second, "champion_metrics.json"))
    assert card["metrics"]["roc_auc"]["champion"] == champion_metrics["roc_auc"]
    assert card["metrics"]["roc_auc"]["candidate"] == second.info["metrics"]["roc_auc"]
    # the decision and the channel agree, whichever way the gate went
    expected = second.id if gate["passed"] else first.id
    assert registry.channel("churn", "online/champion") == expected


def test_gate_rejects_a_worse_candidate_and_keeps_the_champion(
    churn_files: dict[str, Path], churn_champion: dict[str, str], tmp_path: Path
) -> None:
    registry = copy_registry(churn_champion, tmp_path / "reg")
    champion = registry.get(churn_champion["version"])
    worse = TrainSettings(estimator="logistic_regression")
    strict = GateSettings(tolerance=0.0)
    candidate, gate, moved = loop(
        churn_files["base"], churn_files["schema"], registry, tmp_path / "runs", train=worse, gate=strict
    )
    assert not gate["passed"]
    assert moved == []
    assert any("model.roc_auc_vs_champion" in r for r in gate["reasons"])  # type: ignore[attr-defined]
    assert registry.channel("churn", "online/champion") == champion.id
    assert candidate.info["gate"]["passed"] is False  # rejected candidates keep their evidence too
    assert registry.verify_audit("churn").ok


def test_unscorable_champion_makes_the_gate_fail_closed(
    churn_files: dict[str, Path], churn_champion: dict[str, str], tmp_path: Path
) -> None:
    registry = copy_registry(churn_champion, tmp_path / "reg")
    champion = registry.get(churn_champion["version"])
    onnx_file = Path(registry.file_url(champion, "model.onnx"))
    onnx_file.chmod(0o644)
    onnx_file.write_bytes(onnx_file.read_bytes()[:100])  # the champion's artifact is damaged
    quick = TrainSettings(estimator="logistic_regression")  # any candidate: the comparison cannot be made
    _, gate, moved = loop(churn_files["base"], churn_files["schema"], registry, tmp_path / "runs", train=quick)
    assert not gate["passed"]
    assert moved == []
    assert "cannot score the champion" in str(gate["error"])
    assert registry.channel("churn", "online/champion") == champion.id


def test_user_csv_with_only_a_schema_file(tmp_path: Path) -> None:
    """scikit-learn's bundled breast-cancer data, written to CSV, trained with no code change."""
    import sys

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "examples" / "breast_cancer"))
    try:
        from make_csv import write_csv
    finally:
        sys.path.pop(0)
    data = write_csv(tmp_path / "bc.csv")
    registry = Registry(str(tmp_path / "reg"))
    version, gate, moved = loop(data, repo / "examples" / "breast_cancer" / "schema.yaml", registry, tmp_path / "runs")
    assert gate["passed"], gate["reasons"]
    assert version.model == "breast-cancer"
    assert version.info["metrics"]["roc_auc"] > 0.95
    assert moved


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda df: df.drop(columns=["tenure_months"]), DataValidationError, "tenure_months"),
        (
            lambda df: df.assign(support_calls=df["support_calls"].astype(object).where(df.index != 5, "lots")),
            DataValidationError,
            "support_calls",
        ),
        (lambda df: df.iloc[0:0], DataFormatError, "empty|no rows"),
    ],
    ids=["wrong-column", "wrong-type", "empty-file"],
)
def test_bad_input_fails_before_anything_is_written(
    churn_files: dict[str, Path], tmp_path: Path, mutate: object, error: type[Exception], match: str
) -> None:
    frame = pd.read_parquet(churn_files["base"])
    bad = tmp_path / "bad.csv"
    mutate(frame).to_csv(bad, index=False)  # type: ignore[operator]
    run = core.new_run_dir(tmp_path / "runs")
    with pytest.raises(error, match=match):
        core.ingest(str(bad), str(churn_files["schema"]), run)
    assert list(run.iterdir()) == []
    assert Registry(str(tmp_path / "reg")).models() == []


def test_corrupt_parquet_is_a_clear_error(churn_files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    raw = churn_files["base"].read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    run = core.new_run_dir(tmp_path / "runs")
    with pytest.raises(DataFormatError, match=r"bad\.parquet"):
        core.ingest(str(bad), str(churn_files["schema"]), run)
    assert list(run.iterdir()) == []


def test_data_error_names_example_rows(churn_files: dict[str, Path], tmp_path: Path) -> None:
    frame = pd.read_parquet(churn_files["base"])
    frame["plan"] = frame["plan"].astype(object)
    frame.loc[7, "plan"] = "platinum"  # not a declared level, and the schema forbids unknown ones
    bad = tmp_path / "bad.parquet"
    frame.to_parquet(bad)
    with pytest.raises(DataError) as info:
        core.ingest(str(bad), str(churn_files["schema"]), core.new_run_dir(tmp_path / "runs"))
    assert isinstance(info.value, DataValidationError)
    assert info.value.column == "plan"
    assert any(str(frame.loc[7, "customer_id"]) in e for e in info.value.examples)
