"""The declared schema: loading, round trips, and errors that name the offending field."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ferry.demo_data import churn_schema
from ferry.errors import SchemaError
from ferry.schema import Feature, Schema

SCHEMA_YAML = """\
name: churn                 # model name
target: churned
target_classes: [0, 1]
id: customer_id
timestamp: signup_at
pii: [email, phone]
features:
  - {name: tenure_months, type: numeric, min: 0, max: 600, direction: decreasing}
  - {name: monthly_charges, type: numeric, nullable: true}
  - {name: plan, type: categorical, levels: [basic, standard, premium], allow_unknown: false}
  - {name: region, type: categorical}     # levels unknown -> any string allowed
"""


def _doc() -> dict[str, Any]:
    return {
        "name": "churn",
        "target": "churned",
        "id": "customer_id",
        "timestamp": "signup_at",
        "pii": ["email", "phone"],
        "features": [
            {"name": "tenure_months", "type": "numeric", "min": 0, "max": 600, "direction": "decreasing"},
            {"name": "monthly_charges", "type": "numeric", "nullable": True},
            {"name": "plan", "type": "categorical", "levels": ["basic", "standard", "premium"], "allow_unknown": False},
            {"name": "region", "type": "categorical"},
        ],
    }


@pytest.fixture
def yaml_file(tmp_path: Path) -> Path:
    path = tmp_path / "schema.yaml"
    path.write_text(SCHEMA_YAML, encoding="utf-8")
    return path


def test_load_yaml_reads_every_field(yaml_file: Path) -> None:
    schema = Schema.load(yaml_file)
    assert schema.name == "churn"
    assert schema.target == "churned"
    assert schema.target_classes == (0, 1)
    assert schema.positive_class == 1
    assert schema.id == "customer_id"
    assert schema.timestamp == "signup_at"
    assert schema.pii == ("email", "phone")
    assert schema.feature_names == ("tenure_months", "monthly_charges", "plan", "region")
    assert schema.numeric_features == ("tenure_months", "monthly_charges")
    assert schema.categorical_features == ("plan", "region")
    tenure = schema.feature("tenure_months")
    assert (tenure.min, tenure.max, tenure.direction, tenure.nullable) == (0.0, 600.0, "decreasing", True)
    plan = schema.feature("plan")
    assert plan.levels == ("basic", "standard", "premium")
    assert plan.allow_unknown is False
    region = schema.feature("region")
    assert region.levels is None
    assert region.allow_unknown is True


def test_defaults_for_optional_keys() -> None:
    schema = Schema.from_dict({"name": "m", "target": "y", "features": [{"name": "x", "type": "numeric"}]})
    assert schema.target_classes == (0, 1)
    assert (schema.id, schema.timestamp, schema.pii) == (None, None, ())


def test_models_are_frozen(yaml_file: Path) -> None:
    schema = Schema.load(yaml_file)
    with pytest.raises(ValidationError):
        schema.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        schema.features[0].min = 5  # type: ignore[misc]


def test_json_round_trip_is_canonical(yaml_file: Path, tmp_path: Path) -> None:
    schema = Schema.load(yaml_file)
    text = schema.dump_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    path = tmp_path / "schema.json"
    path.write_text(text, encoding="utf-8")
    again = Schema.load(path)
    assert again == schema
    assert again.dump_json() == text  # stable bytes: usable in content hashes


def test_dump_json_does_not_depend_on_key_order() -> None:
    doc = _doc()
    reordered = dict(reversed(list(doc.items())))
    reordered["features"] = [dict(reversed(list(f.items()))) for f in doc["features"]]
    assert Schema.from_dict(reordered).dump_json() == Schema.from_dict(doc).dump_json()


def test_yaml_round_trip(yaml_file: Path, tmp_path: Path) -> None:
    schema = Schema.load(yaml_file)
    path = tmp_path / "again.yml"
    path.write_text(schema.dump_yaml(), encoding="utf-8")
    assert Schema.load(path) == schema


def test_string_target_classes_and_numeric_levels_become_labels() -> None:
    doc = _doc()
    doc["target_classes"] = ["stayed", "left"]
    doc["features"][3]["levels"] = [1, 2, 3]
    schema = Schema.from_dict(doc)
    assert schema.positive_class == "left"
    assert schema.feature("region").levels == ("1", "2", "3")


def test_load_from_fsspec_memory_url() -> None:
    import fsspec

    url = "memory://ferry-test-schema/schema.yaml"
    with fsspec.open(url, "w") as fh:
        fh.write(SCHEMA_YAML)
    try:
        assert Schema.load(url).name == "churn"
    finally:
        fsspec.filesystem("memory").rm("/ferry-test-schema", recursive=True)


def _mutate(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    doc = copy.deepcopy(_doc())
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda d: d["features"][2].update(type="int"),
            "features[2].type: must be 'numeric' or 'categorical', got 'int'",
            id="bad-type",
        ),
        pytest.param(
            lambda d: d["features"].append({"name": "plan", "type": "numeric"}),
            "features[4].name: column 'plan' is already used as features[2].name",
            id="duplicate-feature",
        ),
        pytest.param(
            lambda d: d["features"].append({"name": "customer_id", "type": "categorical"}),
            "features[4].name: column 'customer_id' is already used as id",
            id="feature-is-id",
        ),
        pytest.param(
            lambda d: d.update(id="signup_at"),
            "timestamp: column 'signup_at' is already used as id",
            id="id-is-timestamp",
        ),
        pytest.param(
            lambda d: d["pii"].append("region"),
            "pii[2]: PII column 'region' is also used as features[3].name",
            id="pii-is-feature",
        ),
        pytest.param(
            lambda d: d["pii"].append("churned"),
            "pii[2]: PII column 'churned' is also used as target",
            id="pii-is-target",
        ),
        pytest.param(
            lambda d: d["pii"].append("customer_id"),
            "pii[2]: PII column 'customer_id' is also used as id",
            id="pii-is-id",
        ),
        pytest.param(lambda d: d["pii"].append("email"), "pii[2]: duplicate PII column 'email'", id="pii-twice"),
        pytest.param(
            lambda d: d["features"].append({"name": "churned", "type": "numeric"}),
            "features[4].name: the target column 'churned' cannot be a feature",
            id="target-is-feature",
        ),
        pytest.param(
            lambda d: d["features"][0].update(levels=["a", "b"]),
            "features[0].levels: only categorical features have levels",
            id="levels-on-numeric",
        ),
        pytest.param(
            lambda d: d["features"][2].update(direction="increasing"),
            "features[2].direction: only numeric features have a direction",
            id="direction-on-categorical",
        ),
        pytest.param(
            lambda d: d["features"][3].update(min=0),
            "features[3].min: only numeric features have min",
            id="min-on-categorical",
        ),
        pytest.param(
            lambda d: d["features"][0].update(min=10, max=1),
            "features[0].min: min (10) is greater than max (1)",
            id="min-greater-than-max",
        ),
        pytest.param(lambda d: d.update(features=[]), "features: at least one feature is required", id="no-features"),
        pytest.param(lambda d: d.pop("features"), "features: is required but missing", id="features-missing"),
        pytest.param(lambda d: d.pop("target"), "target: is required but missing", id="target-missing"),
        pytest.param(
            lambda d: d.update(colour="red"), "colour: unknown key; allowed keys are name, target", id="unknown-top-key"
        ),
        pytest.param(
            lambda d: d["features"][1].update(unit="EUR"),
            "features[1].unit: unknown key; allowed keys are name, type, nullable",
            id="unknown-feature-key",
        ),
        pytest.param(
            lambda d: d.update(name="Churn Model"), "name: 'Churn Model' is not a valid model name", id="bad-name"
        ),
        pytest.param(lambda d: d.update(name="x" * 65), "is not a valid model name", id="name-too-long"),
        pytest.param(
            lambda d: d["features"][1].update(direction="up"),
            "features[1].direction: must be 'increasing' or 'decreasing', got 'up'",
            id="bad-direction",
        ),
        pytest.param(
            lambda d: d["features"][2].update(levels=["basic", "basic"]),
            "features[2].levels[1]: duplicate level 'basic'",
            id="duplicate-level",
        ),
        pytest.param(lambda d: d["features"][2].update(levels=[]), "features[2].levels: is empty", id="empty-levels"),
        pytest.param(
            lambda d: d["features"][3].update(allow_unknown=False),
            "features[3].allow_unknown: is false but no levels are listed",
            id="closed-without-levels",
        ),
        pytest.param(
            lambda d: d.update(task="binary", target_classes=[0, 1, 2]),
            "target_classes: must list exactly two classes (negative, positive), got 3",
            id="three-classes",
        ),
        pytest.param(
            lambda d: d.update(target_classes=["yes", "yes"]),
            "target_classes: the two classes must differ",
            id="same-classes",
        ),
        pytest.param(
            lambda d: d.update(target_classes=[False, True]),
            "target_classes[0]: got the boolean false; quote it in YAML",
            id="yaml-boolean-class",
        ),
        pytest.param(
            lambda d: d["features"][1].update(nullable="sometimes"),
            "features[1].nullable: should be a valid boolean",
            id="bad-bool",
        ),
        pytest.param(
            lambda d: d["features"][0].update(min="low"), "features[0].min: should be a valid number", id="bad-min"
        ),
        pytest.param(lambda d: d.update(features={"a": 1}), "features: should be a list", id="features-not-a-list"),
        pytest.param(lambda d: d["features"][0].pop("type"), "features[0].type: is required but missing", id="no-type"),
    ],
)
def test_invalid_schema_names_the_field(change: Callable[[dict[str, Any]], Any], expected: str) -> None:
    with pytest.raises(SchemaError) as info:
        Schema.from_dict(_mutate(change), source="s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml: invalid schema")
    assert expected in message


def test_every_problem_is_listed() -> None:
    def two_problems(d: dict[str, Any]) -> None:
        d["features"][0]["type"] = "int"
        d["colour"] = "red"

    with pytest.raises(SchemaError, match=r"2 problems") as info:
        Schema.from_dict(_mutate(two_problems))
    assert "features[0].type" in str(info.value)
    assert "colour" in str(info.value)


def test_schema_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="features"):
        Schema.from_dict({"name": "m", "target": "y", "features": []})


def test_invalid_file_reports_path_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SCHEMA_YAML.replace("type: categorical}", "type: text}"), encoding="utf-8")
    with pytest.raises(SchemaError) as info:
        Schema.load(path)
    assert str(path) in str(info.value)
    assert "features[3].type: must be 'numeric' or 'categorical', got 'text'" in str(info.value)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("broken.yaml", "name: [unclosed", "is not valid YAML"),
        ("broken.json", '{"name": ', "is not valid JSON"),
        ("empty.yaml", "", "the schema file is empty"),
        ("list.yaml", "- a\n- b\n", "the schema must be a mapping"),
        ("schema.toml", "name = 'x'", "unknown schema file type '.toml'"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SchemaError, match=expected):
        Schema.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="schema file not found"):
        Schema.load(tmp_path / "nope.yaml")


def test_feature_lookup_names_known_features(yaml_file: Path) -> None:
    with pytest.raises(KeyError, match="features are tenure_months"):
        Schema.load(yaml_file).feature("colour")


def test_feature_can_be_built_directly() -> None:
    feature = Feature(name="x", type="categorical", levels=("a", "b"), allow_unknown=False)
    assert feature.levels == ("a", "b")
    with pytest.raises(ValidationError, match="only categorical features have levels"):
        Feature(name="x", type="numeric", levels=("a",))


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("s3://lake/{region}/", "data: unknown placeholder(s) {region}; use model, start, end"),
        ("s3://lake/{start:%Y", "data: not a valid template"),
        ("s3://lake/{}/", "data: unknown placeholder(s) {}"),
        ("", "data: must not be empty"),
    ],
)
def test_a_bad_data_template_is_refused_naming_the_field(template: str, problem: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(problem)):
        Schema.from_dict({**churn_schema().to_dict(), "data": template})


def test_the_data_template_names_the_window_and_the_model() -> None:
    schema = Schema.from_dict({**churn_schema().to_dict(), "data": "s3://lake/{model}/{start:%Y%m%d}-{end:%Y%m%d}/"})
    start, end = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 3, tzinfo=UTC)
    assert schema.data_url(start, end) == "s3://lake/churn/20270101-20270103/"
    assert Schema.from_dict(schema.to_dict()) == schema  # kept in schema.json
    with pytest.raises(SchemaError, match=r"data: .* needs the drift event's time window"):
        schema.data_url(None, None)
    assert churn_schema().data_url(start, end) is None
    assert "data" not in churn_schema().to_dict()  # schemas without it keep their bytes (and version ids)
