"""``POST /explain`` on a real ``bentoml serve`` of the churn champion (15 features: a sampled plan).

One server for the module, in sticky A/B routing: requests without a route key go to the champion, and the
challenger channel points to a version registered without ``explain.npz``, so a route key that lands there shows
that the version answering a request is the one explaining it (and that a version without a background gets 409).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from helpers import copy_registry
from online_support import Server, demo_records, start_server, stop_server, without_explain_file

from ferry.explain import load_explainer, records
from ferry.online.auth import hash_key
from ferry.online.records import Served, prepare
from ferry.online.routing import ab_bucket
from ferry.registry import Registry
from ferry.schema import Schema

pytestmark = pytest.mark.integration

WHY = "explain-test-why"
PREDICT = "explain-test-predict"


@pytest.fixture(scope="module")
def served(churn_champion: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """The server and the id of the challenger version that has no ``explain.npz``."""
    tmp = tmp_path_factory.mktemp("serve-explain")
    registry = copy_registry(churn_champion, tmp / "registry")
    plain = without_explain_file(registry, churn_champion["version"], tmp / "plain")
    registry.promote(plain, "online/challenger", reason="a version registered without explain.npz")
    keys = [
        {"name": "why", "sha256": hash_key(WHY), "scopes": ["explain"]},
        {"name": "app", "sha256": hash_key(PREDICT), "scopes": ["predict"]},
    ]
    running = start_server(
        registry, tmp, api_keys=json.dumps(keys), routing="ab", challenger_percent="50",
        prediction_sample_rate="1", log_flush_interval_s="0.2",
    )  # fmt: skip
    try:
        yield running, plain
    finally:
        stop_server(running)


def _expected(champion: dict[str, str], rows: list[dict[str, Any]], **ask: Any) -> list[dict[str, Any]]:
    """What the version's explainer gives in process for these records (the numbers /explain must send)."""
    registry = Registry(champion["registry"])
    explainer = load_explainer(registry, champion["version"])
    return records(explainer.explain(prepare(rows, Served.of(explainer.schema)), **ask))


def _without_ids(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "prediction_id"} for p in answer["predictions"]]


def test_explain_answers_the_prediction_and_attributions_that_add_up(
    served: tuple[Server, str], churn_champion: dict[str, str]
) -> None:
    server, _ = served
    rows = demo_records(churn_champion, 6, offset=200)
    response = server.post("/explain", {"records": rows}, key=WHY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == churn_champion["version"]
    predicted = server.post("/predict", {"records": rows}, key=PREDICT).json()
    assert _without_ids(body) == _without_ids(predicted)
    assert body["explanations"] == _expected(churn_champion, rows, top_k=5)  # the same float64, bit for bit
    for prediction, explanation in zip(body["predictions"], body["explanations"], strict=True):
        assert explanation["class"] == prediction["prediction"]
        assert explanation["value"] == prediction["probabilities"][str(prediction["prediction"])]
        total = sum(explanation["attributions"].values())
        assert abs(total - (explanation["value"] - explanation["base_value"])) < 1e-6
        assert tuple(explanation["attributions"]) == tuple(Schema.load(churn_champion["schema"]).feature_names)
        assert explanation["exact"] is False
        assert set(explanation["standard_errors"]) == set(explanation["attributions"])
        assert [t["feature"] for t in explanation["top"]] == sorted(
            explanation["attributions"], key=lambda f: -abs(explanation["attributions"][f])
        )[:5]


def test_explain_takes_a_class_and_top_k_and_one_record(
    served: tuple[Server, str], churn_champion: dict[str, str]
) -> None:
    server, _ = served
    row = demo_records(churn_champion, 1, offset=10)[0]
    response = server.post("/explain", {"records": row, "target_class": 0, "top_k": 15}, key=WHY)
    assert response.status_code == 200, response.text
    body = response.json()
    (explanation,) = body["explanations"]
    assert explanation == _expected(churn_champion, [row], target=0, top_k=15)[0]
    assert explanation["class"] == 0
    assert explanation["value"] == body["predictions"][0]["probabilities"]["0"]
    assert len(explanation["top"]) == 15
    assert abs(sum(explanation["attributions"].values()) - (explanation["value"] - explanation["base_value"])) < 1e-6


def test_explain_needs_the_explain_scope(served: tuple[Server, str], churn_champion: dict[str, str]) -> None:
    server, _ = served
    rows = demo_records(churn_champion, 1)
    assert server.post("/explain", {"records": rows}, key=PREDICT).status_code == 403
    assert server.post("/explain", {"records": rows}, key=None).status_code == 401
    assert server.post("/explain", {"records": rows}, key="wrong").status_code == 401
    assert server.post("/predict", {"records": rows}, key=WHY).status_code == 403


def _bad(case: str, row: dict[str, Any], feature: str) -> tuple[dict[str, Any], str]:
    """An explain body that is wrong in one way, and the field its 422 must name (``feature``: one of the row's)."""
    bodies: dict[str, tuple[dict[str, Any], str]] = {
        "top_k zero": ({"records": row, "top_k": 0}, "top_k"),
        "top_k negative": ({"records": row, "top_k": -2}, "top_k"),
        "top_k above the features": ({"records": row, "top_k": 16}, "top_k"),
        "top_k text": ({"records": row, "top_k": "3"}, "top_k"),
        "top_k fraction": ({"records": row, "top_k": 2.5}, "top_k"),
        "top_k boolean": ({"records": row, "top_k": True}, "top_k"),
        "unknown class": ({"records": row, "target_class": "maybe"}, "target_class"),
        "class as a list": ({"records": row, "target_class": [1]}, "target_class"),
        "class boolean": ({"records": row, "target_class": True}, "target_class"),
        "class number not a class": ({"records": row, "target_class": 7}, "target_class"),
        "a feature missing": ({"records": {k: v for k, v in row.items() if k != feature}}, feature),
    }
    return bodies[case]


@pytest.mark.parametrize(
    "case",
    [
        "top_k zero", "top_k negative", "top_k above the features", "top_k text", "top_k fraction", "top_k boolean",
        "unknown class", "class as a list", "class boolean", "class number not a class", "a feature missing",
    ],
)  # fmt: skip
def test_bad_explain_requests_get_422_naming_the_field(
    served: tuple[Server, str], churn_champion: dict[str, str], case: str
) -> None:
    server, _ = served
    row = demo_records(churn_champion, 1)[0]
    body, field = _bad(case, row, Schema.load(churn_champion["schema"]).feature_names[0])
    response = server.post("/explain", body, key=WHY)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert field in response.json()["error"]


@pytest.mark.parametrize("change", ["missing", "unknown", "wrong type", "out of range"])
def test_records_are_rejected_exactly_as_predict_rejects_them(
    served: tuple[Server, str], churn_champion: dict[str, str], change: str
) -> None:
    server, _ = served
    rows = demo_records(churn_champion, 3)
    field = {"unknown": "colour", "wrong type": "monthly_charges"}.get(change, "tenure_months")
    if change == "missing":
        del rows[1][field]
    elif change == "unknown":
        rows[2][field] = "red"
    elif change == "wrong type":
        rows[0][field] = "a lot"
    else:
        rows[1][field] = -5
    explained = server.post("/explain", {"records": rows}, key=WHY)
    predicted = server.post("/predict", {"records": rows}, key=PREDICT)
    assert explained.status_code == predicted.status_code == 422, (explained.text, predicted.text)
    assert explained.json() == predicted.json()
    assert field in explained.json()["field"]


def test_too_many_records_get_413_naming_the_limit(served: tuple[Server, str]) -> None:
    server, _ = served
    response = server.post("/explain", {"records": [{}] * 10_000}, key=WHY)
    assert response.status_code == 413, response.text
    assert response.json()["rule"] == "max_rows"
    assert "10000 records exceed the limit of 100" in response.json()["error"]
    assert "FERRY_EXPLAIN_MAX_ROWS" in response.json()["error"]


def test_a_body_over_the_size_limit_gets_413_before_it_is_read(served: tuple[Server, str]) -> None:
    server, _ = served
    response = server.post("/explain", {"records": [{"padding": "x" * (2 << 20)}]}, key=WHY)
    assert response.status_code == 413, response.text
    assert response.json()["rule"] == "max_body_bytes"


def test_malformed_bodies_get_400(served: tuple[Server, str]) -> None:
    server, _ = served
    broken = httpx.post(server.url + "/explain", content=b"{", headers={"Authorization": f"Bearer {WHY}"}, timeout=10)
    assert broken.status_code == 400
    assert server.post("/explain", {"rows": []}, key=WHY).json()["field"] == "records"
    assert server.post("/explain", [1, 2], key=WHY).status_code == 400


def test_the_version_answering_explains_and_one_without_a_background_gets_409(
    served: tuple[Server, str], churn_champion: dict[str, str]
) -> None:
    server, plain = served
    key = next(k for k in (f"customer-{i}" for i in range(1000)) if ab_bucket(k) < 50)
    rows = demo_records(churn_champion, 2)
    predicted = server.post("/predict", {"records": rows, "route_key": key}, key=PREDICT)
    assert predicted.status_code == 200
    assert predicted.json()["version"] == plain  # the challenger answers this key, and serves predictions
    refused = server.post("/explain", {"records": rows, "route_key": key}, key=WHY)
    assert refused.status_code == 409, refused.text
    assert plain in refused.json()["error"]
    assert "register" in refused.json()["error"]
    other = next(k for k in (f"customer-{i}" for i in range(1000)) if ab_bucket(k) >= 50)
    answered = server.post("/explain", {"records": rows, "route_key": other}, key=WHY)
    assert answered.status_code == 200
    assert answered.json()["version"] == churn_champion["version"]


def test_explained_predictions_are_logged_without_a_latency(
    served: tuple[Server, str], churn_champion: dict[str, str]
) -> None:
    server, _ = served
    rows = demo_records(churn_champion, 3, offset=50)
    ids = [p["prediction_id"] for p in server.post("/explain", {"records": rows}, key=WHY).json()["predictions"]]
    root = Path(server.registry.url) / "models" / "churn" / "online" / "predictions"

    def logged() -> pd.DataFrame:
        files = sorted(root.rglob("*.parquet"))
        frame = pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame({"prediction_id": []})
        return frame[frame["prediction_id"].isin(ids)]

    deadline = time.monotonic() + 15
    while len(logged()) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = logged()
    assert sorted(found["prediction_id"]) == sorted(ids)
    assert found["latency_ms"].isna().all()
    assert not [c for c in found.columns if c.startswith("attribution")]


def test_the_openapi_describes_explain(served: tuple[Server, str]) -> None:
    server, _ = served
    docs = httpx.get(server.url + "/docs.json", headers={"X-API-Key": WHY}, timeout=10).json()
    text = json.dumps(docs["paths"]["/explain"])
    assert "target_class" in text
    assert "top_k" in text
    assert "explanations" in json.dumps(docs)
