"""Model cards: written with every version from its evidence (metrics beside the champion's, the gate, behaviour
tests, limits, lineage), printed by ``ferry models card``, built on the fly for versions without one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import copy_registry
from typer.testing import CliRunner

from ferry.cli import app
from ferry.governance import cards
from ferry.registry import Registry


@pytest.fixture(scope="module")
def champion_card(churn_champion: dict[str, str]) -> dict[str, object]:
    registry = Registry(churn_champion["registry"])
    version = registry.get(churn_champion["version"])
    return json.loads(registry.read_bytes(version, cards.CARD_JSON))


def test_every_version_carries_a_card_built_from_its_evidence(
    churn_champion: dict[str, str], champion_card: dict[str, object]
) -> None:
    registry = Registry(churn_champion["registry"])
    version = registry.get(churn_champion["version"])
    assert {cards.CARD_JSON, cards.CARD_MD} <= set(version.files)
    assert registry.verify_version(version) == []  # the card is covered by the manifest like every file
    card = champion_card
    metrics = json.loads(registry.read_bytes(version, "metrics.json"))
    lineage = json.loads(registry.read_bytes(version, "lineage.json"))
    gate = json.loads(registry.read_bytes(version, "gate.json"))
    assert card["model"] == "churn"
    assert card["task"] == "binary"
    assert card["metrics"] == {k: {"candidate": v, "champion": None} for k, v in metrics.items()}
    assert card["champion"] is None
    assert card["training_data"]["sha256"] == lineage["data"]["sha256"]  # type: ignore[index]
    assert card["training_data"]["rows"] == lineage["data"]["rows"]  # type: ignore[index]
    assert card["gate"]["passed"] is gate["passed"] is True  # type: ignore[index]
    assert card["gate"]["checks"] == len(gate["checks"])  # type: ignore[index]
    behaviour = [c["name"] for c in gate["checks"] if c["name"].startswith("behaviour.")]
    assert behaviour
    assert [b["name"] for b in card["behaviour"]] == behaviour  # type: ignore[attr-defined]
    assert card["lineage"]["code_revision"] == "test"  # type: ignore[index]
    limits = " ".join(card["limits"])  # type: ignore[arg-type]
    assert f"up to {lineage['data']['max_timestamp']}" in limits
    assert "`email`" in limits  # declared personal data is named as never used
    text = registry.read_bytes(version, cards.CARD_MD).decode()
    for heading in (
        "## Intended use",
        "## Training data",
        "## Metrics on the holdout",
        "## Gate",
        "## Behaviour tests",
    ):
        assert heading in text
    assert "Not declared. Add `intended_use` to the schema." in text
    assert f"| roc_auc | {metrics['roc_auc']:.4g} | - |" in text


def test_the_schema_s_intended_use_and_limitations_are_on_the_card(churn_champion: dict[str, str]) -> None:
    registry = Registry(churn_champion["registry"])
    version = registry.get(churn_champion["version"])
    schema = json.loads(registry.read_bytes(version, "schema.json"))
    schema["intended_use"] = "Rank subscribers by churn risk for the retention team; not for pricing."
    schema["limitations"] = ["Only subscribers on monthly contracts were in the training data."]

    def read(name: str) -> bytes | None:
        if name == "schema.json":
            return json.dumps(schema).encode()
        return registry.read_bytes(version, name) if name in version.files else None

    card = cards.build(read)
    assert card["intended_use"] == schema["intended_use"]
    assert card["limits"][0] == schema["limitations"][0]
    text = cards.render(card, version=version.id)
    assert text.startswith(f"# Model card: churn {version.id}")
    assert "not for pricing" in text
    assert "- Only subscribers on monthly contracts" in text


def test_the_schema_file_takes_intended_use_and_limitations(churn_champion: dict[str, str], tmp_path: Path) -> None:
    from ferry.errors import SchemaError
    from ferry.schema import Schema

    doc = yaml.safe_load(Path(churn_champion["schema"]).read_text())
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump({**doc, "intended_use": "churn risk", "limitations": ["monthly only"]}))
    schema = Schema.load(path)
    assert (schema.intended_use, schema.limitations) == ("churn risk", ("monthly only",))
    path.write_text(yaml.safe_dump({**doc, "limitations": "not a list"}))
    with pytest.raises(SchemaError, match="limitations"):
        Schema.load(path)


def test_models_card_prints_it_and_builds_one_for_a_version_without(
    churn_champion: dict[str, str], champion_card: dict[str, object], tmp_path: Path
) -> None:
    runner = CliRunner()
    args = ["models", "card", churn_champion["version"][:8], "--registry", churn_champion["registry"]]
    shown = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"Model card: churn {churn_champion['version']}" in shown.output
    assert "Known limits" in shown.output
    as_json = runner.invoke(app, [*args, "--json"], env={"COLUMNS": "200"})
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == {"version": churn_champion["version"], **champion_card}

    # a version registered before cards existed: the same card, built from its files
    registry = copy_registry(churn_champion, tmp_path / "registry")
    base = registry.get(churn_champion["version"])
    work = tmp_path / "old"
    work.mkdir()
    files = {}
    for name in base.files:
        if name not in (cards.CARD_JSON, cards.CARD_MD):
            (work / name).write_bytes(registry.read_bytes(base, name))
            files[name] = work / name
    lineage = json.loads((work / "lineage.json").read_text())
    (work / "lineage.json").write_text(json.dumps({**lineage, "note": "registered before cards"}))
    old = registry.register(base.model, files, dict(base.info))
    assert cards.CARD_JSON not in old.files
    built = runner.invoke(app, ["models", "card", old.id, "--registry", registry.url, "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.output)["metrics"] == champion_card["metrics"]

    missing = runner.invoke(app, ["models", "card", "ffffffff", "--registry", registry.url])
    assert missing.exit_code == 2
    assert "ffffffff" in missing.output


def test_cards_speak_each_task(task_models: dict[str, object]) -> None:
    registry = task_models["registry"]
    assert isinstance(registry, Registry)
    for name, task, metric in (("defects", "multiclass", "macro_f1"), ("demand", "regression", "rmse")):
        version = task_models[name]["version"]  # type: ignore[index]
        card = json.loads(registry.read_bytes(version, cards.CARD_JSON))
        metrics = json.loads(registry.read_bytes(version, "metrics.json"))
        assert card["task"] == task
        assert card["metrics"][metric]["candidate"] == metrics[metric]
        text = registry.read_bytes(version, cards.CARD_MD).decode()
        assert f"**Task:** {task}" in text
        assert ("classes " in text) is (task == "multiclass")
