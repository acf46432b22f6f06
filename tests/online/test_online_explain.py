"""``ferry.online.explain`` and its wiring: the row limit, the ``explain`` scope, the explainer a version is loaded
with, and ``POST /explain`` per task through the service's ASGI app (multiclass ``defects``, regression ``demand``;
the churn binary model is served by a real ``bentoml serve`` in ``test_serve_explain.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import copy_registry
from online_support import IN_PROCESS_SERVICE, auth, demo_records, without_explain_file

from ferry.cli.parity import records
from ferry.explain import ExplainFile
from ferry.online.auth import SCOPE_BY_PATH, KeyStore, hash_key
from ferry.online.explain import ExplanationRecord, check_row_count, explain
from ferry.online.holder import ModelHolder
from ferry.online.records import RequestRejected
from ferry.online.settings import ApiKeyEntry

pytestmark = IN_PROCESS_SERVICE


def test_more_records_than_the_limit_get_413_naming_it() -> None:
    with pytest.raises(RequestRejected) as refused:
        check_row_count([{}] * 10_000, 100)
    assert refused.value.status == 413
    assert refused.value.rule == "max_rows"
    assert "10000 records exceed the limit of 100" in str(refused.value)
    assert "FERRY_EXPLAIN_MAX_ROWS" in str(refused.value)
    check_row_count([{}] * 100, 100)  # at the limit
    check_row_count({"one": "record"}, 1)


def test_explain_needs_its_own_scope() -> None:
    assert SCOPE_BY_PATH["/explain"] == "explain"
    keys = KeyStore(
        [
            ApiKeyEntry(name="app", sha256=hash_key("p"), scopes=("predict",)),
            ApiKeyEntry(name="why", sha256=hash_key("e"), scopes=("explain",)),
        ]
    )
    assert keys.check("p", "explain").status == 403
    assert "'explain' scope" in keys.check("p", "explain").reason
    assert keys.check("e", "explain").status == 200
    assert keys.check("e", "predict").status == 403


def test_an_explanation_is_sent_under_the_contract_keys() -> None:
    found = {
        "class": "yes", "value": 0.75, "base_value": 0.25, "attributions": {"a": 0.5, "b": 0.0},
        "standard_errors": None, "top": [{"feature": "a", "attribution": 0.5}], "exact": True,
    }  # fmt: skip
    assert ExplanationRecord.model_validate(found).model_dump(mode="json") == found


@pytest.mark.integration
def test_the_holder_loads_the_explainer_once_per_version(churn_champion: dict[str, str], tmp_path: Path) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    holder = ModelHolder(registry, "churn", "online/champion")
    loaded = holder.refresh()
    assert loaded is not None
    assert loaded.explainer is not None
    assert loaded.unexplained == ""
    stored = ExplainFile.from_bytes(registry.read_bytes(loaded.version, "explain.npz"))
    assert np.array_equal(loaded.explainer.plan.masks, stored.plan.masks)
    assert holder.refresh() is loaded  # the same version: nothing is loaded again

    plain = without_explain_file(registry, churn_champion["version"], tmp_path / "plain")
    bare = ModelHolder(registry, "churn", "online/champion", pinned=plain).refresh()
    assert bare is not None  # it serves predictions
    assert bare.explainer is None
    with pytest.raises(RequestRejected) as refused:
        explain(bare, demo_records(churn_champion, 1))
    assert refused.value.status == 409
    assert plain in str(refused.value)
    assert "register" in str(refused.value)


def _rows(task_models: dict[str, Any], name: str, n: int) -> list[dict[str, Any]]:
    registry = task_models["registry"]
    schema = registry.schema(registry.get(task_models[name]["version"].id, model=name))
    return records(pd.read_csv(task_models[name]["data"]).head(n), schema)


def _adds_up(explanation: dict[str, Any]) -> bool:
    return abs(sum(explanation["attributions"].values()) - (explanation["value"] - explanation["base_value"])) < 1e-6


@pytest.mark.integration
def test_a_multiclass_model_explains_the_class_predicted_or_asked(client_for: Any, task_models: dict[str, Any]) -> None:
    client = client_for(task_models["registry"].url, model="defects")
    rows = _rows(task_models, "defects", 12)
    response = client.post("/explain", json={"records": rows}, headers=auth("explain"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["explanations"]) == len(body["predictions"]) == 12
    assert len({p["prediction"] for p in body["predictions"]}) > 1
    for prediction, explanation in zip(body["predictions"], body["explanations"], strict=True):
        assert explanation["class"] == prediction["prediction"]
        assert explanation["value"] == prediction["probabilities"][prediction["prediction"]]
        assert _adds_up(explanation)
        assert explanation["exact"] is True  # 4 features: every coalition
        assert explanation["standard_errors"] is None
        assert len(explanation["top"]) == 4  # FERRY_EXPLAIN_TOP_K (5), at most the features
    body_asked = {"records": rows, "target_class": "crack", "top_k": 2}
    asked = client.post("/explain", json=body_asked, headers=auth("explain"))
    assert asked.status_code == 200, asked.text
    for prediction, explanation in zip(asked.json()["predictions"], asked.json()["explanations"], strict=True):
        assert explanation["class"] == "crack"
        assert explanation["value"] == prediction["probabilities"]["crack"]
        assert _adds_up(explanation)
        assert len(explanation["top"]) == 2
    for bad, field in (({"target_class": "rust"}, "target_class"), ({"top_k": 5}, "top_k")):
        refused = client.post("/explain", json={"records": rows, **bad}, headers=auth("explain"))
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == field


@pytest.mark.integration
def test_a_regressor_explains_its_value_and_takes_no_class(client_for: Any, task_models: dict[str, Any]) -> None:
    client = client_for(task_models["registry"].url, model="demand")
    rows = _rows(task_models, "demand", 12)
    response = client.post("/explain", json={"records": rows, "top_k": 3}, headers=auth("explain"))
    assert response.status_code == 200, response.text
    body = response.json()
    for prediction, explanation in zip(body["predictions"], body["explanations"], strict=True):
        assert explanation["class"] is None
        assert explanation["value"] == prediction["value"]
        assert _adds_up(explanation)
        assert [t["feature"] for t in explanation["top"]] == sorted(
            explanation["attributions"], key=lambda f: -abs(explanation["attributions"][f])
        )[:3]
    refused = client.post("/explain", json={"records": rows, "target_class": 1}, headers=auth("explain"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "target_class"
    assert "regression" in refused.json()["error"]
    assert client.post("/explain", json={"records": rows}, headers=auth("predict")).status_code == 403
    # the key's own rate (2 at once, then one per 100 s) counts /explain as it counts /predict
    slow = auth("slow")
    assert [
        client.post(path, json={"records": rows[:1]}, headers=slow).status_code for path in ("/predict", "/explain")
    ] == [200, 200]
    assert client.post("/explain", json={"records": rows[:1]}, headers=slow).status_code == 429
