"""The task of a schema and its target: declared or inferred, and each bad target refused with one line."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from ferry.data import resolve_task, validate
from ferry.errors import DataValidationError, SchemaError
from ferry.schema import Schema

FEATURES = [{"name": "a", "type": "numeric"}, {"name": "c", "type": "categorical"}]
MONOTONE = {"name": "a", "type": "numeric", "direction": "increasing"}


def schema(**extra: Any) -> Schema:
    return Schema.from_dict({"name": "m", "target": "y", "features": FEATURES, **extra})


def frame(y: list[Any]) -> pd.DataFrame:
    n = len(y)
    return pd.DataFrame({"a": np.arange(n, dtype=float), "c": ["x"] * n, "y": y})


@pytest.mark.parametrize(
    ("declared", "task", "classes"),
    [
        ({}, None, (0, 1)),  # nothing declared: binary (0, 1) until the data says otherwise
        ({"target_classes": [0, 1]}, "binary", (0, 1)),
        ({"target_classes": ["low", "mid", "high"]}, "multiclass", ("low", "mid", "high")),
        ({"task": "multiclass"}, "multiclass", ()),  # levels discovered from the data
        ({"target_min": 0}, "regression", ()),
        ({"task": "regression"}, "regression", ()),
    ],
)
def test_task_follows_from_the_declarations(declared: dict[str, Any], task: str | None, classes: tuple[Any]) -> None:
    s = schema(**declared)
    assert (s.task, s.target_classes) == (task, classes)


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"task": "binary", "target_classes": [0, 1, 2]}, "target_classes: must list exactly two classes"),
        ({"task": "multiclass", "target_classes": ["a", "b"]}, "needs at least three classes, got 2; with two use"),
        ({"target_classes": ["a", "b", "a"]}, "target_classes[2]: duplicate class 'a'"),
        ({"task": "regression", "target_classes": [0, 1]}, "a regression target has no classes"),
        ({"target_classes": [0, 1], "task": "binary", "target_max": 3}, "target_max: only a regression target"),
        ({"task": "regression", "target_min": 5, "target_max": 1}, "target_min (5) is greater than target_max (1)"),
        ({"task": "sorting"}, "task: must be 'binary', 'multiclass' or 'regression'"),
    ],
)
def test_target_declarations_that_disagree_are_named(declared: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError) as info:
        schema(**declared)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_multiclass_direction_names_its_class() -> None:
    with pytest.raises(SchemaError, match=r"features\[0\]\.direction_class: a multiclass direction must name"):
        Schema.from_dict({"name": "m", "target": "y", "features": [MONOTONE], "target_classes": ["a", "b", "c"]})
    features = [{**MONOTONE, "direction_class": "d"}, FEATURES[1]]
    with pytest.raises(SchemaError, match=r"features\[0\]\.direction_class: 'd' is not one of target_classes"):
        Schema.from_dict({"name": "m", "target": "y", "features": features, "target_classes": ["a", "b", "c"]})
    features = [{**MONOTONE, "direction_class": "b"}, FEATURES[1]]
    s = Schema.from_dict({"name": "m", "target": "y", "features": features, "target_classes": ["a", "b", "c"]})
    assert s.features[0].direction_class == "b"
    with pytest.raises(SchemaError, match="a regression direction is about the value"):
        Schema.from_dict({"name": "m", "target": "y", "features": features, "task": "regression"})


@pytest.mark.parametrize(
    ("y", "task", "classes", "encoded"),
    [
        ([0, 1, 1, 0], "binary", (0, 1), [0, 1, 1, 0]),
        (["cat", "dog", "cow", "dog"], "multiclass", ("cat", "cow", "dog"), [0, 2, 1, 2]),
        ([3, 1, 2, 1], "multiclass", (1, 2, 3), [2, 0, 1, 0]),
        ([1.5, 2.25, 3.0, 10.0], "regression", (), [1.5, 2.25, 3.0, 10.0]),
    ],
)
def test_an_undeclared_task_is_inferred_and_said_in_one_line(
    y: list[Any], task: str, classes: tuple[Any], encoded: list[Any]
) -> None:
    settled, note = resolve_task(frame(y), schema())
    assert (settled.task, settled.target_classes) == (task, classes)
    assert note is not None
    assert note.startswith(f"task of 'y' inferred: {task}")
    assert "\n" not in note
    assert validate(frame(y), settled)["y"].tolist() == encoded


def test_declared_tasks_are_not_inferred_and_multiclass_levels_are_discovered() -> None:
    declared = schema(target_classes=[0, 1])
    assert resolve_task(frame([0, 1, 1, 0]), declared) == (declared, None)
    settled, note = resolve_task(frame(["b", "a", "c", "a"]), schema(task="multiclass"))
    assert settled.target_classes == ("a", "b", "c")
    assert note is not None
    assert "discovered" in note


@pytest.mark.parametrize(
    ("declared", "y", "rule", "named"),
    [
        ({"target_classes": ["a", "b", "c"]}, ["a", "b", "smudge", "c"], "target_classes", "'smudge'"),
        ({}, ["a", "a", "a", "a"], "target_constant", "'a'"),
        ({"task": "regression"}, [2.0, 2.0, 2.0, 2.0], "target_constant", "2.0"),
        ({"task": "regression"}, [1.0, np.nan, 2.0, 3.0], "target_not_null", "row 1"),
        ({"task": "regression"}, [1.0, np.inf, 2.0, 3.0], "target_finite", "row 1: inf"),
        ({"task": "regression"}, ["1.0", "nan", "2", "3"], "target_finite", "row 1"),
        ({"task": "regression"}, ["1.0", "high", "2", "3"], "target_numeric", "'high'"),
        ({"task": "regression", "target_min": 0}, [1.0, -4.0, 2.0, 3.0], "target_range", "row 1: -4.0"),
        ({"target_classes": ["a", "b", "c"]}, ["a", None, "b", "c"], "target_not_null", "row 1"),
    ],
)
def test_bad_targets_are_one_line_errors_naming_the_column(
    declared: dict[str, Any], y: list[Any], rule: str, named: str
) -> None:
    with pytest.raises(DataValidationError) as info:
        validate(frame(y), schema(**declared))  # validate settles an undeclared task itself
    assert (info.value.column, info.value.rule) == ("y", rule)
    message = str(info.value)
    assert message.startswith("column 'y' breaks rule")
    assert named in message
    assert "\n" not in message
