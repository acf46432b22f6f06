"""The explainer on small exported models of each task: additivity, the class explained, top-k, chunking, and
bad input (each a clear error naming the field)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from ferry.errors import BackgroundMissing, DataValidationError
from ferry.explain import (
    Explainer,
    ExplainFile,
    ExplainSettings,
    background_inputs,
    batch_columns,
    build_explain_file,
    load_explainer,
    records,
    sampled_plan,
)
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer
from ferry.train.metrics import Interval
from ferry.train.onnx_export import to_onnx

FEATURES = [
    {"name": "a", "type": "numeric"},
    {"name": "b", "type": "numeric"},
    {"name": "c", "type": "categorical", "levels": ["x", "y", "z"]},
]
CLASSES = {"binary": ["no", "yes"], "multiclass": ["low", "mid", "high"], "regression": None}


def toy_schema(task: str) -> Schema:
    classes = CLASSES[task]
    return Schema.from_dict(
        {
            "name": f"toy-{task}",
            "target": "y",
            "id": "row_id",
            "task": task,
            **({"target_classes": classes} if classes else {}),
            "features": FEATURES,
        }
    )


def toy_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "row_id": [f"r{seed}-{i}" for i in range(n)],
            "a": rng.normal(size=n).astype(np.float32).astype(float),
            "b": rng.normal(size=n).astype(np.float32).astype(float),
            "c": rng.choice(["x", "y", "z"], size=n).astype(object),
        }
    )


@functools.cache
def toy_model(task: str) -> bytes:
    x = toy_frame(300, seed=0)
    signal = 1.5 * x["a"] - x["b"] + (x["c"] == "z")
    pre = ColumnTransformer(
        [
            ("num", "passthrough", ["a", "b"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["c"]),
        ]
    )
    estimator: Any
    y: Any
    if task == "regression":
        estimator, y, interval = Ridge(), signal.to_numpy(), Interval(0.9, 0.5, 100, 100, 0.9)
    else:
        classes = CLASSES[task]
        assert classes is not None
        cuts = np.quantile(signal, np.linspace(0, 1, len(classes) + 1)[1:-1])
        estimator, y, interval = LogisticRegression(), np.searchsorted(cuts, signal), None
    pipeline = Pipeline([("pre", pre), ("est", estimator)]).fit(x[["a", "b", "c"]], y)
    return bytes(to_onnx(pipeline, toy_schema(task), interval=interval))


@pytest.fixture(scope="module")
def toys() -> dict[str, Explainer]:
    out = {}
    for task in CLASSES:
        schema = toy_schema(task)
        out[task] = Explainer(toy_model(task), schema, background_inputs(toy_frame(80, seed=1), schema, rows=20))
    return out


def rows(n: int = 7) -> dict[str, np.ndarray]:
    x = toy_frame(n, seed=2)
    return {
        "a": x["a"].to_numpy(np.float32).reshape(-1, 1),
        "b": x["b"].to_numpy(np.float32).reshape(-1, 1),
        "c": x["c"].to_numpy(object).reshape(-1, 1),
    }


@pytest.mark.parametrize("task", list(CLASSES))
def test_attributions_add_up_to_the_prediction_minus_the_base(toys: dict[str, Explainer], task: str) -> None:
    explainer = toys[task]
    found = explainer.explain(rows())
    assert found.values.shape == (7, 3)
    assert found.exact
    # f(x) is the served answer: the predicted class's probability, or the value
    scorer = OnnxScorer(toy_model(task))
    answer = scorer.answer(rows())
    if task == "regression":
        served = answer.values  # type: ignore[union-attr]
        assert found.target == (None,) * 7
    else:
        labels = answer.labels  # type: ignore[union-attr]
        served = answer.probabilities[np.arange(7), labels]  # type: ignore[union-attr]
        assert found.target == tuple(CLASSES[task][i] for i in labels)  # type: ignore[index]
    np.testing.assert_allclose(found.prediction, served, rtol=0, atol=1e-6)
    # the base value is the mean of f over the background: the same for every row when the class is the same
    np.testing.assert_allclose(found.values.sum(axis=1), found.prediction - found.base, rtol=0, atol=1e-6)
    scale = np.abs(served).max()
    assert np.abs(found.values.sum(axis=1) - (served - found.base)).max() <= 4 * np.finfo(np.float32).eps * scale


def test_the_asked_class_is_explained(toys: dict[str, Explainer]) -> None:
    explainer = toys["multiclass"]
    per_class = [explainer.explain(rows(), target=c) for c in ("low", "mid", "high")]
    assert [e.target[0] for e in per_class] == ["low", "mid", "high"]
    # probabilities sum to 1, so the attributions over classes sum to 0 feature by feature
    np.testing.assert_allclose(sum(e.values for e in per_class), 0.0, atol=1e-6)
    np.testing.assert_allclose(sum(e.base for e in per_class), 1.0, atol=1e-6)


def test_top_k_names_the_largest_attributions(toys: dict[str, Explainer]) -> None:
    found = toys["regression"].explain(rows(), top_k=2)
    for values, top in zip(found.values, found.top, strict=True):
        assert len(top) == 2
        ranked = [found.features[j] for j in np.argsort(-np.abs(values), kind="stable")[:2]]
        assert list(top) == ranked


def test_chunking_and_sampling_keep_each_rows_answer(toys: dict[str, Explainer]) -> None:
    explainer = toys["binary"]
    whole = explainer.explain(rows())
    one_by_one = Explainer(toy_model("binary"), explainer.schema, explainer.background, max_tile_rows=1)
    np.testing.assert_array_equal(one_by_one.explain(rows()).values, whole.values)
    single = explainer.explain({k: v[3:4] for k, v in rows().items()})
    np.testing.assert_array_equal(single.values[0], whole.values[3])
    sampled = Explainer(toy_model("binary"), explainer.schema, explainer.background, plan=sampled_plan(3, groups=4))
    estimate = sampled.explain(rows())
    assert not estimate.exact
    np.testing.assert_allclose(estimate.values.sum(axis=1), whole.prediction - whole.base, atol=1e-6)
    assert (np.abs(estimate.values - whole.values) <= 5 * estimate.error + 1e-9).all()


def test_background_holds_features_only_and_is_deterministic() -> None:
    schema = toy_schema("binary")
    reference = toy_frame(80, seed=1).assign(y=1)
    first = background_inputs(reference, schema, rows=20)
    assert list(first) == ["a", "b", "c"]
    again = background_inputs(reference, schema, rows=20)
    assert all(np.array_equal(first[n], again[n]) for n in first)
    assert len(first["a"]) == 20


@pytest.mark.parametrize(
    ("kwargs", "field", "rule"),
    [
        ({"top_k": 4}, "top_k", "range"),
        ({"top_k": 0}, "top_k", "range"),
        ({"target": "maybe"}, "class", "levels"),
    ],
)
def test_bad_arguments_name_the_field(
    toys: dict[str, Explainer], kwargs: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(DataValidationError) as caught:
        toys["binary"].explain(rows(), **kwargs)
    assert (caught.value.column, caught.value.rule) == (field, rule)
    assert field in str(caught.value)


def test_a_regressor_is_asked_for_no_class(toys: dict[str, Explainer]) -> None:
    with pytest.raises(DataValidationError, match="class"):
        toys["regression"].explain(rows(), target="yes")


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        (lambda r: {k: v for k, v in r.items() if k != "b"}, "b", "required"),
        (lambda r: {**r, "email": r["c"]}, "email", "unknown"),
        (lambda r: {**r, "a": r["a"].reshape(-1)}, "a", "shape"),
    ],
)
def test_bad_inputs_name_the_field(toys: dict[str, Explainer], change: Any, field: str, rule: str) -> None:
    with pytest.raises(DataValidationError) as caught:
        toys["binary"].explain(change(rows()))
    assert (caught.value.column, caught.value.rule) == (field, rule)


def test_a_version_without_background_is_refused_naming_it(tmp_path: Path) -> None:
    schema = toy_schema("binary")
    (tmp_path / "model.onnx").write_bytes(toy_model("binary"))
    (tmp_path / "schema.json").write_text(schema.dump_json())
    registry = Registry(str(tmp_path / "registry"))
    files = {"model.onnx": tmp_path / "model.onnx", "schema.json": tmp_path / "schema.json"}
    version = registry.register("toy-binary", files, {})
    with pytest.raises(BackgroundMissing, match=f"toy-binary/{version.id}.*register the model again"):
        load_explainer(registry, version.id)


def test_a_registered_version_is_explained_with_its_stored_plan_and_background(tmp_path: Path) -> None:
    schema = toy_schema("binary")
    explain_file = build_explain_file(toy_frame(80, seed=1), schema, ExplainSettings(background_rows=10))
    for name, data in (("model.onnx", toy_model("binary")), ("explain.npz", explain_file)):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "schema.json").write_text(schema.dump_json())
    registry = Registry(str(tmp_path / "registry"))
    names = ("model.onnx", "schema.json", "explain.npz")
    version = registry.register("toy-binary", {n: tmp_path / n for n in names}, {})
    loaded = load_explainer(registry, version.id)
    stored = ExplainFile.from_bytes(explain_file)
    direct = Explainer(toy_model("binary"), schema, stored.background, plan=stored.plan)
    np.testing.assert_array_equal(loaded.explain(rows()).values, direct.explain(rows()).values)
    assert len(loaded.background["a"]) == 10


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_json_answer_and_the_batch_columns_carry_the_same_numbers(toys: dict[str, Explainer], task: str) -> None:
    found = toys[task].explain(rows(), top_k=2)
    answers = json.loads(json.dumps(records(found)))  # what a client reads
    columns = batch_columns(found, classifier=task != "regression")
    for i, answer in enumerate(answers):
        assert answer["value"] == columns["explained_value"][i] == found.prediction[i]
        assert answer["base_value"] == columns["base_value"][i]
        assert [answer["attributions"][f] for f in found.features] == [columns[f"attribution_{f}"][i] for f in "abc"]
        assert [t["feature"] for t in answer["top"]] == [columns["top_1"][i], columns["top_2"][i]]
        assert "top_3" not in columns
        assert sum(answer["attributions"].values()) == pytest.approx(answer["value"] - answer["base_value"], abs=1e-6)
        if task == "regression":
            assert answer["class"] is None
            assert "explained_class" not in columns
        else:
            assert answer["class"] == columns["explained_class"][i]
            assert answer["class"] in CLASSES[task]
