"""The data and schema of a retrain asked for by model: explicit data, the deployment's data_sources, or the
schema's data template, each with the drift event's window filled in; every missing or conflicting input refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_artifacts

from ferry.demo_data import churn_schema
from ferry.errors import ConfigError
from ferry.registry import Registry
from ferry.train.source import resolve_source

START, END = "2027-03-01T06:00:00+00:00", "2027-03-02T06:00:00+00:00"


def registry_with(tmp_path: Path, name: str, template: str | None) -> Registry:
    """A registry whose model ``name`` has a champion whose schema.json carries ``template`` as its data."""
    reg = Registry(str(tmp_path / "registry"), actor="tester")
    files = write_artifacts(tmp_path / name, name)
    doc = {**churn_schema().to_dict(), "name": name, **({"data": template} if template else {})}
    files["schema.json"].write_text(json.dumps(doc))
    v = reg.register(name, files, {"gate": {"passed": True}})
    reg.promote(v.id, "online/champion", model=name, reason="test")
    return reg


def test_the_data_source_of_a_model_comes_from_data_then_data_sources_then_its_schema(tmp_path: Path) -> None:
    reg = registry_with(tmp_path, "churn_eu", "s3://lake/{model}/{start:%Y%m%dT%H}-{end:%Y%m%dT%H}/")
    window = {"window_start": START, "window_end": END}
    found = resolve_source(reg, tmp_path / "run", model="churn_eu", **window)
    assert found.data == "s3://lake/churn_eu/20270301T06-20270302T06/"
    assert (found.model, found.came_from) == ("churn_eu", "the data template of the schema of 'churn_eu'")
    assert json.loads(Path(found.schema_file).read_text())["name"] == "churn_eu"  # the champion's schema
    sources = {"churn_eu": "/data/{model}-{start:%Y-%m-%d}.parquet", "other": "/nowhere"}
    found = resolve_source(reg, tmp_path / "run", model="churn_eu", data_sources=sources, **window)
    assert (found.data, found.came_from) == ("/data/churn_eu-2027-03-01.parquet", "data_sources['churn_eu']")
    found = resolve_source(reg, tmp_path / "run", model="churn_eu", data="/given.csv", data_sources=sources)
    assert (found.data, found.came_from) == ("/given.csv", "data")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "name the model to retrain (model) or its schema (schema_file)"),
        ({"model": "nobody"}, "model 'nobody' has no version on 'online/champion'"),
        ({"model": "churn"}, "no data source for model 'churn': set `data` in its schema"),
        ({"model": "churn", "data": "/d/{start:%Y}.csv"}, "data: '/d/{start:%Y}.csv' of model 'churn' needs the"),
        ({"model": "churn", "data": "/d/{region}.csv"}, "data: '/d/{region}.csv': unknown placeholder(s) {region}"),
        (
            {"model": "churn", "data_sources": {"churn": "/d/{start:%Y"}},
            "data_sources['churn']: '/d/{start:%Y': not a valid template",
        ),
        ({"model": "churn", "data": "/d.csv", "window_start": "yesterday"}, "window_start 'yesterday' is not an ISO"),
        ({"model": "churn", "data": "/d.csv", "window_start": END, "window_end": START}, "window_end '2027-03-01"),
    ],
)
def test_a_retrain_without_a_usable_source_is_refused_clearly(
    tmp_path: Path, kwargs: dict[str, str], problem: str
) -> None:
    reg = registry_with(tmp_path, "churn", None)
    with pytest.raises(ConfigError) as caught:
        resolve_source(reg, tmp_path / "run", **kwargs)  # type: ignore[arg-type]
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_schema_that_leaves_its_task_to_the_data_is_read_as_written(tmp_path: Path) -> None:
    """Classes left to be discovered at ingest, with a direction on one of them: the source is resolved without
    deciding the task (reading the schema back as binary refused the direction's class)."""
    reg = registry_with(tmp_path, "churn", None)
    schema = tmp_path / "defects.yaml"
    schema.write_text(
        "name: defects\ntarget: defect\nfeatures:\n  - {name: speed, type: numeric}\n"
        "  - {name: pressure, type: numeric, direction: increasing, direction_class: scratch}\n"
    )
    found = resolve_source(reg, tmp_path / "run", schema_file=str(schema), data="/d/{model}.csv")
    assert (found.data, found.model, found.schema_file) == ("/d/defects.csv", "defects", str(schema))


def test_a_schema_file_for_another_model_is_refused(tmp_path: Path) -> None:
    reg = registry_with(tmp_path, "churn", None)
    schema = tmp_path / "schema.yaml"
    schema.write_text(churn_schema().dump_yaml())
    with pytest.raises(ConfigError, match="is the schema of 'churn', not of model 'churn_eu'"):
        resolve_source(reg, tmp_path / "run", model="churn_eu", schema_file=str(schema), data="/d.csv")
    assert resolve_source(reg, tmp_path / "run", schema_file=str(schema), data="/d.csv").model == "churn"
