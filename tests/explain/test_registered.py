"""Explaining registered versions of every task (the session's trained models): additivity against the served
answer, determinism from the same bytes, the background without ids or PII, and records checked as ``/predict``
checks them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ferry.data import read_table, to_onnx_inputs, validate
from ferry.explain import EXPLAIN_FILE, Explainer, ExplainSettings, load_explainer
from ferry.online.records import RequestRejected, Served, prepare
from ferry.registry import Registry
from ferry.scoring import OnnxScorer, Scores

pytestmark = pytest.mark.integration  # uses the session's trained models

ROWS = 4


@pytest.fixture(scope="module")
def versions(churn_champion: dict[str, str], task_models: dict[str, Any]) -> dict[str, tuple[Registry, str, str]]:
    """task -> (registry, version id, data file)."""
    return {
        "binary": (Registry(churn_champion["registry"]), churn_champion["version"], churn_champion["data"]),
        "multiclass": (
            task_models["registry"],
            task_models["defects"]["version"].id,
            str(task_models["defects"]["data"]),
        ),
        "regression": (
            task_models["registry"],
            task_models["demand"]["version"].id,
            str(task_models["demand"]["data"]),
        ),
    }


def inputs_of(explainer: Explainer, data: str) -> dict[str, np.ndarray]:
    served = Served.of(explainer.schema)
    frame = read_table(data).head(ROWS)
    return to_onnx_inputs(validate(frame, served.features, require_target=False), served.features)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_registered_version_is_explained_and_adds_up(versions: dict[str, Any], task: str) -> None:
    registry, version, data = versions[task]
    explainer = load_explainer(registry, version)
    assert explainer.scorer.task == task
    rows = inputs_of(explainer, data)
    found = explainer.explain(rows, top_k=3)
    answer = OnnxScorer(registry.read_bytes(registry.get(version), "model.onnx")).answer(rows)
    served = answer.probabilities[np.arange(ROWS), answer.labels] if isinstance(answer, Scores) else answer.values
    np.testing.assert_allclose(found.prediction, served, rtol=0, atol=1e-6)
    total = found.values.sum(axis=1)
    assert np.abs(total - (served - found.base)).max() <= 4 * np.finfo(np.float32).eps * max(1.0, np.abs(served).max())
    assert all(len(top) == 3 and set(top) <= set(explainer.features) for top in found.top)
    # churn's 15 features do not fit the default budget exactly: a sampled estimate, its error measured
    assert found.exact == explainer.plan.exact
    assert EXPLAIN_FILE in registry.get(version).files
    assert (found.error > 0).any() != found.exact


def test_the_same_version_gives_identical_attributions(versions: dict[str, Any]) -> None:
    registry, version, data = versions["binary"]
    first, again = load_explainer(registry, version), load_explainer(registry, version)
    rows = inputs_of(first, data)
    np.testing.assert_array_equal(first.explain(rows).values, again.explain(rows).values)


def test_the_background_holds_no_id_or_pii(versions: dict[str, Any]) -> None:
    registry, version, _ = versions["binary"]
    explainer = load_explainer(registry, version)
    schema = explainer.schema
    assert list(explainer.background) == list(schema.feature_names)
    assert not {schema.id, schema.target, *schema.pii} & set(explainer.background)
    assert all(len(column) == ExplainSettings().background_rows for column in explainer.background.values())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: {k: v for k, v in r.items() if k != "tenure_months"}, "tenure_months"),
        (lambda r: {**r, "favourite_colour": "blue"}, "favourite_colour"),
    ],
)
def test_records_are_checked_as_predict_checks_them(versions: dict[str, Any], change: Any, field: str) -> None:
    registry, version, data = versions["binary"]
    explainer = load_explainer(registry, version)
    record = {str(k): (None if v != v else v) for k, v in read_table(data).iloc[0].to_dict().items()}
    served = Served.of(explainer.schema)
    found = explainer.explain(prepare([record], served))  # the record /predict accepts is explained
    assert found.values.shape == (1, len(explainer.features))
    with pytest.raises(RequestRejected) as caught:
        prepare([change(record)], served)
    assert caught.value.status == 422
    assert caught.value.field == field
