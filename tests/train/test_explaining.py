"""The explain step on the session's real models: every version carries its importance table and pictures, the
table is measured with the served explainer, and the ranks move against a champion's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import clone_version, copy_clean, svg_texts

from ferry.data import to_onnx_inputs
from ferry.explain import ImportanceSettings, load_explainer
from ferry.explain.importance import Importance, mean_abs_attribution, sample_rows
from ferry.registry import ModelVersion, Registry
from ferry.train.explaining import explain_candidate
from ferry.train.run_files import read_parquet, write_json

pytestmark = pytest.mark.integration

PICTURES = {
    "binary": {"plot_importance.svg", "plot_waterfall.svg", "plot_roc.svg", "plot_calibration.svg"},
    "multiclass": {
        "plot_importance.svg",
        "plot_waterfall.svg",
        "plot_roc.svg",
        "plot_calibration.svg",
        "plot_confusion.svg",
    },
    "regression": {"plot_importance.svg", "plot_waterfall.svg", "plot_predicted.svg", "plot_residuals.svg"},
}
METRIC = {"binary": ("roc_auc", False), "multiclass": ("macro_f1", False), "regression": ("rmse", True)}


def _versions(churn_champion: dict[str, str], task_models: dict[str, Any]) -> list[tuple[Registry, ModelVersion]]:
    churn = Registry(churn_champion["registry"])
    return [
        (churn, churn.get(churn_champion["version"])),
        (task_models["registry"], task_models["defects"]["version"]),
        (task_models["registry"], task_models["demand"]["version"]),
    ]


def _run_of(task_models: dict[str, Any], model: str) -> Path:
    for run in sorted((Path(task_models["root"]) / "runs").iterdir()):
        if json.loads((run / "schema.json").read_text())["name"] == model:
            return run
    raise AssertionError(f"no run of {model}")


def test_every_task_version_carries_its_importance_table_pictures_and_card(
    churn_champion: dict[str, str], task_models: dict[str, Any]
) -> None:
    for registry, version in _versions(churn_champion, task_models):
        schema = registry.schema(version)
        table = Importance.from_dict(json.loads(registry.read_bytes(version, "importance.json")))
        holdout_rows = version.info["lineage"]["split"]["holdout_rows"]
        assert table.task == schema.kind
        settings = ImportanceSettings()
        assert (table.rows, table.holdout_rows) == (min(settings.rows, holdout_rows), holdout_rows)
        assert table.repeats == settings.repeats
        assert (table.metric, table.lower_is_better) == METRIC[schema.kind]
        # the metric of the served ONNX model, against scikit-learn's on the same holdout
        assert table.baseline == pytest.approx(version.info["metrics"][table.metric], abs=1e-3)
        assert sorted(f.feature for f in table.features) == sorted(schema.feature_names)
        assert [f.rank for f in table.features] == list(range(1, len(schema.feature_names) + 1))
        values = [f.mean_abs_attribution for f in table.features]
        assert values == sorted(values, reverse=True)
        assert values[0] > 0
        assert (table.champion, {f.was for f in table.features}) == (None, {None})  # the first version of each

        assert {n for n in version.files if n.startswith("plot_")} == PICTURES[schema.kind]
        for name in PICTURES[schema.kind]:
            texts = svg_texts(registry.read_bytes(version, name))
            assert not any("champion" in t for t in texts), name
        assert table.features[0].feature in svg_texts(registry.read_bytes(version, "plot_importance.svg"))
        # one explained row drawn as a waterfall: its title, and the features it names are the schema's
        drawn = svg_texts(registry.read_bytes(version, "plot_waterfall.svg"))
        assert any("one holdout row explained" in t for t in drawn)
        assert set(schema.feature_names) & set(drawn)

        card = json.loads(registry.read_bytes(version, "model_card.json"))
        assert card["importance"] == table.to_dict()
        markdown = registry.read_bytes(version, "model_card.md").decode()
        section = markdown.split("## Global importance", 1)[1].split("\n## ", 1)[0]
        for f in table.features:
            assert f"| {f.feature} | {f.rank} | {f.mean_abs_attribution:.4g} |" in section


def test_the_table_is_measured_with_the_served_explainer(task_models: dict[str, Any]) -> None:
    registry, version = task_models["registry"], task_models["demand"]["version"]
    table = Importance.from_dict(json.loads(registry.read_bytes(version, "importance.json")))
    holdout = read_parquet(_run_of(task_models, "demand") / "holdout.parquet")
    sample = holdout.iloc[sample_rows(len(holdout), limit=table.rows, seed=table.seed)]
    schema = registry.schema(version)
    found = mean_abs_attribution(load_explainer(registry, version), to_onnx_inputs(sample, schema))
    stored = {f.feature: f.mean_abs_attribution for f in table.features}
    assert [stored[name] for name in schema.feature_names] == found.tolist()  # bit for bit


@pytest.fixture(scope="module")
def demand_champions(task_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A copy of the task registry with three champions of ``demand`` to compare against: one whose importance
    table ranks the features in reverse and lacks the top one, one without a table, one with neither a table nor
    a background."""
    tmp = tmp_path_factory.mktemp("demand-champions")
    registry = copy_clean(Path(task_models["root"]) / "reg", tmp / "reg")
    base = registry.get(task_models["demand"]["version"].id, model="demand")
    table = json.loads(registry.read_bytes(base, "importance.json"))
    d = len(table["features"])
    reversed_table = {**table, "features": [{**f, "rank": d + 1 - f["rank"]} for f in table["features"][1:]]}
    made = {
        "reversed": clone_version(registry, base, tmp / "a", note="a", replace={
            "importance.json": json.dumps(reversed_table).encode()}),
        "background": clone_version(registry, base, tmp / "b", note="b", replace={"importance.json": None}),
        "nothing": clone_version(registry, base, tmp / "c", note="c", replace={
            "importance.json": None, "explain.npz": None}),
    }  # fmt: skip
    return {"registry": registry, "ids": made, "table": table, "tmp": tmp}


def _explain_against(task_models: dict[str, Any], found: dict[str, Any], which: str, tmp_path: Path) -> Importance:
    run = tmp_path / "run"
    shutil.copytree(_run_of(task_models, "demand"), run)
    gate = json.loads((run / "gate.json").read_text())
    write_json(run / "gate.json", {**gate, "champion": found["ids"][which]})
    out = explain_candidate(run, found["registry"])
    assert json.loads((run / "importance.json").read_text()) == out["importance"]
    for name in out["plots"]:
        if name not in ("plot_importance.svg", "plot_waterfall.svg"):
            assert f"champion {found['ids'][which]}" in " ".join(svg_texts((run / name).read_bytes())), name
    return Importance.from_dict(out["importance"])


def test_ranks_move_against_the_champions_table(
    task_models: dict[str, Any], demand_champions: dict[str, Any], tmp_path: Path
) -> None:
    table = _explain_against(task_models, demand_champions, "reversed", tmp_path)
    d = len(table.features)
    top = demand_champions["table"]["features"][0]["feature"]
    assert (table.champion, table.champion_note) == (demand_champions["ids"]["reversed"], None)
    assert {f.feature: f.was for f in table.features} == {
        f["feature"]: (None if f["feature"] == top else d + 1 - f["rank"])
        for f in demand_champions["table"]["features"]
    }


def test_a_champion_without_a_table_is_ranked_from_its_background(
    task_models: dict[str, Any], demand_champions: dict[str, Any], tmp_path: Path
) -> None:
    table = _explain_against(task_models, demand_champions, "background", tmp_path)
    assert table.champion_note is None
    assert [f.was for f in table.features] == [f.rank for f in table.features]  # the same model, the same rows


def test_a_champion_with_nothing_to_rank_is_named_and_the_run_goes_on(
    task_models: dict[str, Any], demand_champions: dict[str, Any], tmp_path: Path
) -> None:
    table = _explain_against(task_models, demand_champions, "nothing", tmp_path)
    champion = demand_champions["ids"]["nothing"]
    assert table.champion_note == f"the champion {champion} has no importance.json nor explain.npz to rank its features"
    assert {f.was for f in table.features} == {None}
