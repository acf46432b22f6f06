"""The BentoML service in-process: ``Online.to_asgi()`` under Starlette's TestClient, over a real registry."""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import clone_version, copy_registry
from hypothesis import given, settings
from hypothesis import strategies as st
from online_support import IN_PROCESS_SERVICE, KEYS, auth, demo_records, edge_heartbeat, expected_probabilities

pytestmark = IN_PROCESS_SERVICE


def test_bentoml_times_requests_out_by_the_request_timeout(service: ModuleType, monkeypatch: Any) -> None:
    """The service's BentoML timeout is FERRY_ONLINE_REQUEST_TIMEOUT_S (read when the module is imported); settings
    that do not validate leave the default, and the service instance then names the setting at fault."""
    assert service.Online.config["traffic"]["timeout"] == 10.0
    monkeypatch.setenv("FERRY_ONLINE_REQUEST_TIMEOUT_S", "7")
    assert service.request_timeout_s() == 7.0
    monkeypatch.setenv("FERRY_ONLINE_REQUEST_TIMEOUT_S", "2")  # below the body timeout: refused by the settings
    assert service.request_timeout_s() == 10.0


def test_predictions_equal_onnx_scorer(client: Any, churn_champion: dict[str, str]) -> None:
    records = demo_records(churn_champion, 50, offset=100)
    response = client.post("/predict", json={"records": records}, headers=auth("predict"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == churn_champion["version"]
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in body["predictions"]])
    assert np.array_equal(got, expected_probabilities(churn_champion, records).astype(np.float64))

    single = client.post("/predict", json={"records": records[0]}, headers=auth("predict")).json()
    assert single["predictions"][0]["probabilities"] == body["predictions"][0]["probabilities"]
    assert single["predictions"][0]["prediction_id"] != body["predictions"][0]["prediction_id"]


def test_model_endpoint_describes_the_served_version(client: Any, churn_champion: dict[str, str]) -> None:
    body = client.post("/model", headers=auth("predict")).json()
    assert body["version"] == churn_champion["version"]
    assert body["channel"] == "online/champion"
    assert body["gate"]["passed"] is True
    assert [f["name"] for f in body["input_schema"]["features"]][:2] == ["tenure_months", "monthly_charges"]


def _record(churn_champion: dict[str, str], **changes: Any) -> dict[str, Any]:
    return {**demo_records(churn_champion, 1)[0], **changes}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"age": "forty"}, "age"),
        ({"plan": "platinum"}, "plan"),
        ({"num_lines": 0}, "num_lines"),
        ({"satisfaction_score": [3]}, "satisfaction_score"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_fields_get_422_naming_the_field(
    client: Any, churn_champion: dict[str, str], changes: dict[str, Any], field: str
) -> None:
    response = client.post("/predict", json={"records": _record(churn_champion, **changes)}, headers=auth("predict"))
    assert response.status_code == 422, response.text
    assert f"field '{field}'" in response.text


def test_a_missing_field_and_nan_get_422(client: Any, churn_champion: dict[str, str]) -> None:
    record = _record(churn_champion)
    del record["contract"]
    response = client.post("/predict", json={"records": record}, headers=auth("predict"))
    assert response.status_code == 422
    assert "field 'contract'" in response.text
    text = json.dumps({"records": _record(churn_champion, monthly_charges=math.nan)})
    assert "NaN" in text
    headers = {**auth("predict"), "Content-Type": "application/json"}
    response = client.post("/predict", content=text.encode(), headers=headers)
    assert response.status_code == 422
    assert "field 'monthly_charges'" in response.text


@pytest.mark.parametrize(
    "body",
    [b'{"records": ', b"[1, 2]", b'{"records": 5}', b'{"rows": []}', b"\xff\xfe", b"", b"[" * 100_000],
)
def test_malformed_bodies_get_400_never_500(client: Any, body: bytes) -> None:
    headers = {**auth("predict"), "Content-Type": "application/json"}
    response = client.post("/predict", content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text


def test_a_huge_body_gets_413(client: Any, churn_champion: dict[str, str]) -> None:
    record = _record(churn_champion)
    body = json.dumps({"records": [record] * 6000}).encode()
    assert len(body) > 1 << 20
    response = client.post("/predict", content=body, headers={**auth("predict"), "Content-Type": "application/json"})
    assert response.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size is counted
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = client.post(
        "/predict", content=chunks(), headers={**auth("predict"), "Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_too_many_records_get_413(client_for: Any, churn_champion: dict[str, str]) -> None:
    client = client_for(churn_champion["registry"], max_records="3")
    records = demo_records(churn_champion, 4)
    response = client.post("/predict", json={"records": records}, headers=auth("predict"))
    assert response.status_code == 413
    assert client.post("/predict", json={"records": records[:3]}, headers=auth("predict")).status_code == 200


ENDPOINTS = {
    "/predict": "predict",
    "/model": "predict",
    "/refresh": "admin",
    "/feedback": "feedback",
    "/telemetry": "telemetry",
}


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), ("wrong", 401), ("revoked", 401), ("scope", 403), ("right", 200)],
)
def test_keys_by_endpoint(
    client: Any, churn_champion: dict[str, str], tmp_path: Path, path: str, key: str | None, status: int
) -> None:
    scope = ENDPOINTS[path]
    if key is None:
        headers = {}
    elif key == "wrong":
        headers = {"Authorization": "Bearer not-a-key"}
    elif key == "revoked":
        headers = auth("revoked")
    elif key == "scope":
        headers = auth("admin" if scope != "admin" else "feedback")
    else:
        headers = {"X-API-Key": KEYS[scope]}
    body = {"records": _record(churn_champion)} if path == "/predict" else None
    if path == "/feedback":
        answer = client.post("/predict", json={"records": _record(churn_champion)}, headers=auth("predict"))
        body = {"items": [{"prediction_id": answer.json()["predictions"][0]["prediction_id"], "label": 1}]}
    if path == "/telemetry":
        body = edge_heartbeat(churn_champion, tmp_path, "http://unused", token=None)[1]
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
def test_probes_are_open(client: Any, path: str) -> None:
    # /metrics needs the Prometheus directory that `bentoml serve` sets up: see test_online_serve.py
    response = client.get(path)
    assert response.status_code == 200, response.text


def test_other_paths_need_a_key(client: Any) -> None:
    assert client.get("/docs.json").status_code == 401
    assert client.get("/docs.json", headers=auth("feedback")).status_code == 200


def test_not_ready_without_a_model(client_for: Any, churn_champion: dict[str, str], tmp_path: Path) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    client = client_for(registry.url, channel="online/challenger")
    assert client.get("/readyz").status_code == 503
    response = client.post("/predict", json={"records": _record(churn_champion)}, headers=auth("predict"))
    assert response.status_code == 503
    registry.promote(churn_champion["version"], "online/challenger", model="churn", reason="test")
    assert client.post("/refresh", headers=auth("admin")).json()["version"] == churn_champion["version"]
    assert client.get("/readyz").status_code == 200


def test_promotion_switches_the_answering_version(
    client_for: Any, churn_champion: dict[str, str], tmp_path: Path
) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    base = registry.get(churn_champion["version"])
    client = client_for(registry.url)
    record = {"records": _record(churn_champion)}
    before = client.post("/predict", json=record, headers=auth("predict")).json()
    broken = clone_version(registry, base, tmp_path / "broken", note="broken", onnx=b"\x00 not onnx")
    registry.promote(broken, "online/champion", model="churn", reason="test: damaged")
    assert client.post("/refresh", headers=auth("admin")).json()["version"] == base.id
    assert client.post("/predict", json=record, headers=auth("predict")).json()["version"] == base.id
    new = clone_version(registry, base, tmp_path / "new", note="retrained")
    registry.promote(new, "online/champion", model="churn", reason="test")
    assert client.post("/refresh", headers=auth("admin")).json()["version"] == new
    after = client.post("/predict", json=record, headers=auth("predict")).json()
    assert after["version"] == new
    assert after["predictions"][0]["probabilities"] == before["predictions"][0]["probabilities"]


def test_feedback_by_scope_and_joined_to_prediction_logs(
    client_for: Any, churn_champion: dict[str, str], tmp_path: Path
) -> None:
    import pandas as pd

    registry = copy_registry(churn_champion, tmp_path / "registry")
    client = client_for(registry.url, prediction_sample_rate="1", log_buffer_rows="1")
    records = demo_records(churn_champion, 4)
    predictions = client.post("/predict", json={"records": records}, headers=auth("predict")).json()["predictions"]
    items = [
        {"prediction_id": p["prediction_id"], "label": r["churned"]} for p, r in zip(predictions, records, strict=True)
    ]
    assert client.post("/feedback", json={"items": items}, headers=auth("predict")).status_code == 403
    response = client.post("/feedback", json={"items": items}, headers=auth("feedback"))
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 4}
    bad = client.post("/feedback", json={"items": [{"prediction_id": "x", "label": 1}]}, headers=auth("feedback"))
    assert bad.status_code == 400
    assert "prediction_id" in bad.text
    issued = items[1]["prediction_id"]
    for never in (uuid.uuid4().hex, issued[:16] + "0" * 16, ("1" if issued[0] == "0" else "0") + issued[1:]):
        forged = client.post(
            "/feedback", json={"items": [items[0], {"prediction_id": never, "label": 1}]}, headers=auth("feedback")
        )
        assert forged.status_code == 422, forged.text
        assert "[1].prediction_id" in forged.text  # and nothing of the request is stored (items[0] is not twice)
    root = tmp_path / "registry" / "models" / "churn" / "online"
    logged = pd.concat([pd.read_parquet(f) for f in sorted((root / "predictions").rglob("*.parquet"))])
    labels = pd.concat([pd.read_parquet(f) for f in sorted((root / "feedback").rglob("*.parquet"))])
    joined = logged.merge(labels, on="prediction_id")
    assert sorted(joined["prediction_id"]) == sorted(p["prediction_id"] for p in predictions)
    assert "email" not in logged.columns


# ------------------------------------------------------------------------------------------------ routing


def _versions(client: Any, record: dict[str, Any], n: int, key: str | None = None) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        body: dict[str, Any] = {"records": record} if key is None else {"records": record, "route_key": key}
        response = client.post("/predict", json=body, headers=auth("predict"))
        assert response.status_code == 200, response.text
        seen[response.json()["version"]] += 1
    return seen


def test_service_canary_answers_from_both_versions(
    client_for: Any,
    pair: tuple[Any, str, str],
    churn_champion: dict[str, str],
) -> None:
    registry, champion, challenger = pair
    client = client_for(registry.url, routing="canary", challenger_percent="50")
    seen = _versions(client, demo_records(churn_champion, 1)[0], 200)
    assert set(seen) == {champion, challenger}
    assert 60 <= seen[challenger] <= 140, seen


def test_service_ab_is_sticky(
    client_for: Any,
    pair: tuple[Any, str, str],
    churn_champion: dict[str, str],
) -> None:
    registry, champion, challenger = pair
    client = client_for(registry.url, routing="ab", challenger_percent="50")
    record = demo_records(churn_champion, 1)[0]
    sides = {}
    for key in [f"c{i}" for i in range(30)]:
        seen = _versions(client, record, 3, key)
        assert len(seen) == 1, seen
        sides[key] = next(iter(seen))
    assert set(sides.values()) == {champion, challenger}


def test_service_shadow_never_changes_a_response(
    client_for: Any,
    pair: tuple[Any, str, str],
    churn_champion: dict[str, str],
    tmp_path: Path,
) -> None:
    registry, champion, challenger = pair
    records = demo_records(churn_champion, 20)
    plain = client_for(registry.url).post("/predict", json={"records": records}, headers=auth("predict")).json()
    client = client_for(registry.url, routing="shadow", prediction_sample_rate="1", log_buffer_rows="1")
    shadowed = client.post("/predict", json={"records": records}, headers=auth("predict")).json()
    assert shadowed["version"] == champion
    strip = [{k: v for k, v in p.items() if k != "prediction_id"} for p in plain["predictions"]]
    assert [{k: v for k, v in p.items() if k != "prediction_id"} for p in shadowed["predictions"]] == strip
    import pandas as pd

    files = sorted((Path(registry.url) / "models" / "churn" / "online" / "predictions").rglob("*.parquet"))
    logged = pd.concat([pd.read_parquet(f) for f in files])
    assert set(logged.loc[logged["role"] == "shadow", "version"]) == {challenger}
    assert (logged["role"] == "shadow").sum() >= 20
    assert (logged["role"] == "answer").sum() >= 20
    assert (logged["latency_ms"] > 0).all()  # each side's own time on the request, for the rollout to compare
    assert logged.groupby("role")["request"].nunique().to_dict() == {"answer": 1, "shadow": 1}  # one request each


def test_a_pinned_service_keeps_its_version(client_for: Any, churn_champion: dict[str, str], tmp_path: Path) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    base = registry.get(churn_champion["version"])
    client = client_for(registry.url, version=base.id)
    new = clone_version(registry, base, tmp_path / "new", note="newer")
    registry.promote(new, "online/champion", model="churn", reason="test")
    assert client.post("/refresh", headers=auth("admin")).json()["version"] == base.id
    response = client.post("/predict", json={"records": _record(churn_champion)}, headers=auth("predict"))
    assert response.json()["version"] == base.id


# ------------------------------------------------------------------------------------------------ the fast lane


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"records": ', 400),
        (b"[1, 2]", 400),
        (b'{"records": 5}', 400),
        (b'{"records": [1]}', 400),
        (b'{"rows": []}', 400),
        (b'{"records": [], "route_key": null}', 422),
        (b'{"records": {"age": 3}}', 422),
        (b"OK", 200),
    ],
)
def test_the_fast_lane_answers_what_the_typed_api_answers(
    client: Any, service: ModuleType, churn_champion: dict[str, str], body: bytes, status: int
) -> None:
    """POST /predict takes the fast lane; with the lane closed BentoML's typed API answers: same status, same data."""
    if body == b"OK":
        body = json.dumps({"records": demo_records(churn_champion, 3), "route_key": "k"}).encode()
    headers = {**auth("predict"), "Content-Type": "application/json"}
    attached = service.ATTACHED
    fast = client.post("/predict", content=body, headers=headers)
    app, attached.app = attached.app, None  # the front door still checks the key, BentoML answers
    try:
        typed = client.post("/predict", content=body, headers=headers)
    finally:
        attached.app = app
    assert fast.status_code == typed.status_code == status, (fast.text, typed.text)
    assert "server" not in fast.headers  # answered by the lane, not by BentoML's endpoint
    assert typed.headers["server"].startswith("BentoML")
    if status == 200:
        strip = [{k: v for k, v in p.items() if k != "prediction_id"} for p in fast.json()["predictions"]]
        assert strip == [{k: v for k, v in p.items() if k != "prediction_id"} for p in typed.json()["predictions"]]
        assert fast.json()["version"] == typed.json()["version"] == churn_champion["version"]


# ------------------------------------------------------------------------------------------------ telemetry


def _telemetry_rows(registry: str) -> Any:
    import pandas as pd

    files = sorted((Path(registry) / "models" / "churn" / "online" / "telemetry").rglob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()


def test_telemetry_stores_a_real_edge_heartbeat(
    client_for: Any, churn_champion: dict[str, str], tmp_path: Path
) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    client = client_for(registry.url, log_buffer_rows="1")
    _, beat = edge_heartbeat(churn_champion, tmp_path / "device", "http://unused", token=None)
    response = client.post("/telemetry", json=beat, headers=auth("telemetry"))
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 1}
    rows = _telemetry_rows(registry.url)
    rows = rows[rows["id"] == beat["id"]]  # other tests' heartbeats may sit in the registry this one copied
    assert len(rows) == 1
    assert rows.iloc[0]["version"] == churn_champion["version"]
    assert rows.iloc[0]["rows"] == 40
    assert json.loads(rows.iloc[0]["sketch"]) == beat["sketch"]
    assert client.post("/telemetry", json=beat, headers=auth("predict")).status_code == 403


def _set(beat: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(beat))
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    node[last] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("id", "not-hex", "id"),
        ("device", "", "device"),
        ("health.ok", "maybe", "health.ok"),
        ("sha256", "abc", "sha256"),
        ("sent_at", "yesterday", "sent_at"),
        ("model", "fraud", "model"),
        ("sketch.rows", -1, "sketch.rows"),
        ("sketch.numeric.age.quantiles.p50", "high", "sketch.numeric.age.quantiles.p50"),
        ("sketch.categorical.plan.counts", {f"c{i}": 1 for i in range(1001)}, "sketch.categorical.plan.counts"),
        ("health", None, "health"),
    ],
)
def test_a_malformed_heartbeat_gets_422_naming_the_field(
    client: Any, churn_champion: dict[str, str], tmp_path: Path, path: str, value: Any, field: str
) -> None:
    _, beat = edge_heartbeat(churn_champion, tmp_path, "http://unused", token=None)
    response = client.post("/telemetry", json=_set(beat, path, value), headers=auth("telemetry"))
    assert response.status_code == 422, response.text
    assert f"field '{field}'" in response.text


@pytest.mark.parametrize("body", [b"[]", b"5", b"{", b'{"id": 1}', b"null", b'{"a":' * 50_000])
def test_telemetry_shapes_get_4xx(client: Any, body: bytes) -> None:
    headers = {**auth("telemetry"), "Content-Type": "application/json"}
    response = client.post("/telemetry", content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(("path", "key"), [("/feedback", "feedback"), ("/model", "predict"), ("/refresh", "admin")])
def test_deeply_nested_json_gets_4xx_on_every_api(client: Any, path: str, key: str) -> None:
    headers = {**auth(key), "Content-Type": "application/json"}
    response = client.post(path, content=b'{"items": ' + b"[" * 100_000, headers=headers)
    assert 400 <= response.status_code < 500, response.text


# ------------------------------------------------------------------------ fuzz: no 5xx, no logged row lost

# Text with every code point JSON can carry, lone surrogates drawn often (st.text never draws them).
ANY_TEXT = st.lists(st.characters(exclude_categories=()) | st.characters(categories=["Cs"]), max_size=6).map("".join)
ANY_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), ANY_TEXT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)


def _encode(body: Any, raw: bool) -> bytes:
    """The body as a client sends it: ASCII escapes, or raw UTF-8 with surrogates passed through (invalid UTF-8)."""
    if raw:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(body).encode()


def _wait_for(predicate: Any, timeout_s: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _logged(registry: str, log: str) -> Any:
    import pandas as pd

    files = sorted((Path(registry) / "models" / "churn" / "online" / log).rglob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()


def test_fuzzed_json_never_gets_5xx_and_every_logged_row_reaches_disk(
    client_for: Any, churn_champion: dict[str, str], tmp_path: Path
) -> None:
    """Arbitrary JSON, lone surrogates and raw invalid UTF-8 included, in every field of every body-taking API:
    never a 5xx; every prediction answered 200, every label and heartbeat acknowledged is in the registry after the
    next flush; nothing is quarantined (the edge refuses what no log could hold); the log writer is alive."""
    registry = copy_registry(churn_champion, tmp_path / "registry")
    client = client_for(registry.url, prediction_sample_rate="1", log_buffer_rows="100000", log_flush_interval_s="0.2")
    record = demo_records(churn_champion, 1)[0]
    fields = [*record, "not_a_field"]
    _, beat = edge_heartbeat(churn_champion, tmp_path / "device", "http://unused", token=None)
    beat_paths = ["device", "channel", "version", "health.last_error", "model", "sketch.categorical.plan.counts"]
    predicted: list[str] = []
    labels: list[str] = []
    beats: list[str] = []

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(
        field=st.sampled_from(fields),
        value=st.one_of(ANY_TEXT.filter(bool), ANY_JSON),  # text half the time: what categorical fields take
        key=ANY_TEXT,
        raw=st.booleans(),
        target=st.sampled_from(
            ["record", "id", "route_key", "body", "feedback", "label", "labelled", "heartbeat", "count"]
        ),
        beat_path=st.sampled_from(beat_paths),
    )
    def run(field: str, value: Any, key: str, raw: bool, target: str, beat_path: str) -> None:
        path, scope = "/predict", "predict"
        if target == "record":
            body: Any = {"records": [{**record, field: value}]}
        elif target == "id":
            body = {"records": {**record, "customer_id": value if isinstance(value, str) else key}}
        elif target == "route_key":
            body = {"records": record, "route_key": key}
        elif target == "body":
            body = value
        elif target in ("feedback", "label", "labelled"):
            path, scope = "/feedback", "feedback"
            pid = predicted[-1] if predicted else "0" * 32
            label = {"feedback": 1, "label": value, "labelled": "1" if raw else 0}[target]
            body = {"items": [{"prediction_id": key if target == "feedback" else pid, "label": label}]}
        else:
            path, scope = "/telemetry", "telemetry"
            fresh = {**beat, "id": uuid.uuid4().hex}
            body = _set(fresh, beat_path, {key: 1} if target == "count" else (key if value is None else value))
        response = client.post(
            path, content=_encode(body, raw), headers={**auth(scope), "Content-Type": "application/json"}
        )
        assert response.status_code < 500, (path, body, response.text)
        if response.status_code == 200:
            if path == "/predict":
                predicted.extend(p["prediction_id"] for p in response.json()["predictions"])
            elif path == "/feedback":
                labels.append(body["items"][0]["prediction_id"])
            else:
                beats.append(body["id"])

    before = Counter(_logged(registry.url, "feedback").get("prediction_id", []))  # other tests' labels in the copy
    run()
    assert predicted  # the fuzz reached every log with accepted rows
    assert labels
    assert beats

    def feedback() -> Counter[str]:
        return Counter(_logged(registry.url, "feedback").get("prediction_id", [])) - before

    assert _wait_for(lambda: set(predicted) <= set(_logged(registry.url, "predictions").get("prediction_id", [])))
    assert _wait_for(lambda: feedback().total() >= len(labels))
    assert feedback() == Counter(labels)
    assert _wait_for(lambda: set(beats) <= set(_logged(registry.url, "telemetry").get("id", [])))
    assert client.get("/readyz").status_code == 200  # ready includes: the log writer is alive
    assert not list((Path(registry.url) / "models" / "churn" / "online" / "quarantine").rglob("*.jsonl"))


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
def test_every_401_is_the_same_answer(client: Any, path: str) -> None:
    """No key, an unknown key, a malformed header and a revoked key get byte-identical 401s: a caller cannot learn
    that a key once existed."""
    answers = set()
    for headers in (
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic abc"},
        {"X-API-Key": KEYS["revoked"]},
        auth("revoked"),
    ):
        response = client.post(path, json={}, headers=headers)
        assert response.status_code == 401
        answers.add((response.content, tuple(sorted(response.headers.items()))))
    assert len(answers) == 1, answers


def test_keys_in_the_wrong_place_or_malformed_are_refused_with_the_same_401(
    client: Any, churn_champion: dict[str, str]
) -> None:
    """A valid key is only taken from ``Authorization: Bearer`` or ``X-API-Key``: in the query string, a cookie,
    another header, or without its scheme it is no key (401, the same answer as no key at all); a malformed or
    huge key is an unknown one; the same key in the right place is answered."""
    key = KEYS["predict"]
    body = {"records": _record(churn_champion)}
    wrong = [
        ("/predict?api_key=" + key, {}),
        ("/predict?key=" + key + "&token=" + key, {}),
        ("/predict", {"Authorization": key}),
        ("/predict", {"Authorization": "Token " + key}),
        ("/predict", {"Authorization": "Basic " + key}),
        ("/predict", {"X-Api-Token": key}),
        ("/predict", {"Cookie": "api_key=" + key}),
        ("/predict", {"Authorization": "Bearer"}),
        ("/predict", {"Authorization": "Bearer " + key + "x"}),
        ("/predict", {"Authorization": "Bearer " + key[:-1]}),
        ("/predict", {"Authorization": "Bearer " + key.upper()}),
        ("/predict", {"Authorization": "Bearer " + "k" * 8000}),
        ("/predict", {"X-API-Key": ("\u00e9\u00e8" + key).encode("latin-1")}),
        ("/predict", {"Authorization": "Bearer " + key + " " + key}),
    ]
    answers = set()
    for path, headers in wrong:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 401, (path, headers)
        answers.add(response.content)
    assert answers == {client.post("/predict", json=body).content}
    assert client.post("/predict", json=body, headers=auth("predict")).status_code == 200
    assert client.post("/predict", json=body, headers={"X-API-Key": key}).status_code == 200


BIG = "x" * 300_000


@pytest.mark.parametrize(
    ("path", "key", "body"),
    [
        ("/predict", "predict", lambda r: {"records": {**r, "age": BIG}}),  # numeric field, text given
        ("/predict", "predict", lambda r: {"records": {**r, "plan": BIG}}),  # categorical, unknown level
        ("/predict", "predict", lambda r: {"records": {**r, BIG: 1}}),  # unknown field name
        ("/predict", "predict", lambda r: {"records": [{**r, "tenure_months": -1, "age": BIG}] * 3}),
        ("/predict", "predict", lambda r: {"records": r, "route_key": 5, BIG: 1}),
        ("/feedback", "feedback", lambda r: {"items": [{"prediction_id": "0" * 32, "label": BIG}]}),
        ("/feedback", "feedback", lambda r: {"items": [{"prediction_id": BIG, "label": 1}]}),
        ("/telemetry", "telemetry", lambda r: {"id": BIG}),
    ],
)
def test_a_huge_bad_value_is_not_echoed_back(
    client: Any, churn_champion: dict[str, str], path: str, key: str, body: Any
) -> None:
    """A 4xx names the field and quotes at most a bounded part of what was sent, whatever field holds it."""
    response = client.post(path, json=body(_record(churn_champion)), headers=auth(key))
    assert 400 <= response.status_code < 500, response.text[:500]
    assert len(response.content) < 5_000, response.text[:500]


def test_refusals_are_counted_by_reason_and_key_and_a_repeat_offender_is_a_suspect(
    client_for: Any, churn_champion: dict[str, str]
) -> None:
    """Every kind of refusal lands in ferry_online_refused_total with its status, reason and key (- when the caller
    had none), and a client refused suspect_refusals times is counted once as a suspect."""
    client = client_for(churn_champion["registry"], suspect_refusals="5", suspect_window_s="600")
    record = _record(churn_champion)
    client.post("/predict", json={"records": record})  # 401 no key
    client.post("/predict", json={"records": record}, headers={"Authorization": "Bearer guess"})  # 401 unknown
    client.post("/predict", json={"records": record}, headers=auth("revoked"))  # 401 revoked
    client.post("/refresh", headers=auth("predict"))  # 403
    client.post("/predict", json={"records": {**record, "age": "old"}}, headers=auth("predict"))  # 422
    client.post("/predict", content=b"{", headers=auth("predict"))  # 400
    metrics = client.get("/metrics").text
    for status, reason, key in (
        (401, "no_key", "-"),
        (401, "unknown_key", "-"),
        (401, "revoked_key", "old"),
        (403, "scope", "app"),
        (422, "numeric_type", "app"),
        (400, "json", "app"),
    ):
        assert f'ferry_online_refused_total{{status="{status}",reason="{reason}",key="{key}"}} 1' in metrics, (
            status,
            reason,
        )
    assert "ferry_online_suspect_clients_total 1" in metrics  # six refusals of one client, threshold five
    assert client.post("/predict", json={"records": record}, headers=auth("predict")).status_code == 200


def test_a_suspect_client_waits_in_the_tarpit_for_its_401s_and_a_valid_key_never_does(
    client_for: Any, churn_champion: dict[str, str]
) -> None:
    """Once a client is a suspect its 401s are held for tarpit_s and close the connection; its requests with a
    valid key, and its 403s, are answered at once; with tarpit_s 0 nothing is held."""
    import time

    body = {"records": _record(churn_champion)}
    for delay, held in (("0.3", True), ("0", False)):
        client = client_for(churn_champion["registry"], suspect_refusals="3", tarpit_s=delay)
        for _ in range(3):
            response = client.post("/predict", json=body)
            assert response.status_code == 401
            assert "connection" not in response.headers  # not a suspect yet
        started = time.monotonic()
        response = client.post("/predict", json=body, headers={"Authorization": "Bearer guess"})
        waited = time.monotonic() - started
        assert response.status_code == 401
        assert (waited >= 0.3, response.headers.get("connection")) == ((True, "close") if held else (False, None))
        started = time.monotonic()
        assert client.post("/predict", json=body, headers=auth("predict")).status_code == 200
        assert client.post("/refresh", headers=auth("predict")).status_code == 403
        assert time.monotonic() - started < 0.3
        assert f"ferry_online_tarpitted_total {int(held)}" in client.get("/metrics").text


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_go_on(
    client_for: Any, churn_champion: dict[str, str]
) -> None:
    """A key's own rate_per_s and burst (in FERRY_ONLINE_API_KEYS or the key file; the "slow" key of the test keys
    makes 2 requests at once and then one per 100 s) are applied before its body is read; past them it gets 429
    with Retry-After, counted with reason rate; another key goes on."""
    client = client_for(churn_champion["registry"])
    body = {"records": _record(churn_champion)}
    slow = auth("slow")
    assert [client.post("/predict", json=body, headers=slow).status_code for _ in range(2)] == [200, 200]
    refused = client.post("/predict", json=body, headers=slow)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "rate" in refused.json()["error"]
    assert all(client.post("/predict", json=body, headers=auth("predict")).status_code == 200 for _ in range(5))
    assert 'ferry_online_refused_total{status="429",reason="rate",key="slow"} 1' in client.get("/metrics").text


@pytest.mark.parametrize("name", ["defects", "demand"])
def test_the_service_answers_the_task_and_its_openapi_describes_every_task(
    client_for: Any, task_models: dict[str, Any], name: str
) -> None:
    import pandas as pd

    from ferry.cli.parity import records
    from ferry.schema import Schema

    registry = task_models["registry"]
    version = registry.get(task_models[name]["version"].id, model=name)
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    client = client_for(registry.url, model=name)
    rows = records(pd.read_csv(task_models[name]["data"]).head(3), schema)
    response = client.post("/predict", json={"records": rows}, headers=auth("predict"))
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert response.json()["version"] == version.id
    if name == "demand":
        assert all(set(a) == {"prediction_id", "value", "lower", "upper", "coverage"} for a in answers)
    else:
        assert all(list(a["probabilities"]) == ["none", "scratch", "dent", "crack"] for a in answers)
    docs = client.get("/docs.json", headers=auth("predict")).json()
    shapes = docs["components"]["schemas"]
    assert {"prediction", "probabilities"} <= set(shapes["Prediction"]["properties"])
    assert {"value", "lower", "upper", "coverage"} <= set(shapes["ValuePrediction"]["properties"])
    answer = docs["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["predictions"]["items"]["anyOf"] == [
        {"$ref": "#/components/schemas/Prediction"},
        {"$ref": "#/components/schemas/ValuePrediction"},
    ]
    label = json.dumps(shapes["FeedbackItem"]["properties"]["label"])
    assert '"number"' in label
    assert '"string"' in label
