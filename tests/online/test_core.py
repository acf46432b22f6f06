"""ferry.online without BentoML: request records, the model holder, predictions and API keys."""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import clone_version, copy_registry
from online_support import demo_records, expected_probabilities

from ferry.data import validate
from ferry.errors import DataValidationError
from ferry.online.auth import KeyStore, hash_key
from ferry.online.holder import ModelHolder, warmup_records
from ferry.online.ids import PredictionIds
from ferry.online.predict import model_info, predict
from ferry.online.records import RequestRejected, Served, parse_json, prepare, to_records
from ferry.online.settings import ApiKeyEntry, OnlineSettings
from ferry.registry import Registry
from ferry.schema import Schema

CHANNEL = "online/champion"


@pytest.fixture(scope="module")
def holder(churn_champion: dict[str, str]) -> ModelHolder:
    h = ModelHolder(Registry(churn_champion["registry"]), "churn", CHANNEL)
    h.refresh()
    return h


# ------------------------------------------------------------------------------------------------ records


def test_predictions_equal_onnx_scorer_bit_for_bit(churn_champion: dict[str, str], holder: ModelHolder) -> None:
    records = demo_records(churn_champion, 200)
    loaded = holder.current
    assert loaded is not None
    assert loaded.id == churn_champion["version"]
    response = predict(loaded, records)
    got = np.array([[p.probabilities["0"], p.probabilities["1"]] for p in response.predictions], dtype=np.float64)
    want = expected_probabilities(churn_champion, records).astype(np.float64)
    assert got.shape == (200, 2)
    assert np.array_equal(got, want)
    assert [p.prediction for p in response.predictions] == (want[:, 1] > want[:, 0]).astype(int).tolist()
    assert response.version == churn_champion["version"]
    assert response.model == "churn"
    assert len({p.prediction_id for p in response.predictions}) == 200


def test_a_record_scores_the_same_alone_and_in_a_list(churn_champion: dict[str, str], holder: ModelHolder) -> None:
    records = demo_records(churn_champion, 5)
    assert holder.current is not None
    batch = predict(holder.current, records).predictions
    for record, in_batch in zip(records, batch, strict=True):
        alone = predict(holder.current, [record]).predictions[0]
        assert alone.probabilities == in_batch.probabilities


def test_pii_and_id_fields_are_accepted_and_never_reach_the_model(churn_champion: dict[str, str]) -> None:
    schema = Schema.load(churn_champion["schema"])
    served = Served.of(schema)
    record = demo_records(churn_champion, 1)[0]
    assert {"email", "phone", "customer_id", "signup_at", "churned"} <= set(record)
    inputs = prepare([record], served)
    assert set(inputs) == set(schema.feature_names)


def _bad(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**record, **changes}
    return {k: v for k, v in out.items() if v is not _DROP}


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"age": "forty"}, "age", "numeric_type"),
        ({"age": True}, "age", "numeric_type"),
        ({"plan": 3}, "plan", "categorical_type"),
        ({"tenure_months": _DROP}, "tenure_months", "required"),
        ({"plan": "platinum"}, "plan", "levels"),
        ({"monthly_charges": math.nan}, "monthly_charges", "finite"),
        ({"monthly_charges": math.inf}, "monthly_charges", "finite"),
        ({"monthly_charges": 10**400}, "monthly_charges", "finite"),  # a JSON integer too big for a float
        ({"age": 7}, "age", "range"),
        ({"tenure_months": None}, "tenure_months", "not_null"),
        ({"contract": None}, "contract", "not_null"),
        ({"tenure": 3}, "tenure", "unknown_field"),
    ],
)
def test_a_bad_record_is_refused_naming_the_field(
    churn_champion: dict[str, str], changes: dict[str, Any], field: str, rule: str
) -> None:
    served = Served.of(Schema.load(churn_champion["schema"]))
    record = _bad(demo_records(churn_champion, 1)[0], **changes)
    with pytest.raises(RequestRejected) as info:
        prepare([record], served)
    assert (info.value.status, info.value.field, info.value.rule) == (422, field, rule)
    assert field in str(info.value)


def test_in_a_list_the_bad_record_is_named_by_its_position(churn_champion: dict[str, str]) -> None:
    served = Served.of(Schema.load(churn_champion["schema"]))
    records = demo_records(churn_champion, 3)
    records[2] = {**records[2], "age": "x"}
    with pytest.raises(RequestRejected, match=r"\[2\]\.age"):
        prepare(records, served)
    records[2] = {**records[2], "age": 30, "plan": "gold"}
    with pytest.raises(RequestRejected, match="row 2: 'gold'") as info:
        prepare(records, served)
    assert info.value.field == "plan"


def test_unknown_category_passes_where_the_schema_allows_it(churn_champion: dict[str, str]) -> None:
    served = Served.of(Schema.load(churn_champion["schema"]))
    record = {**demo_records(churn_champion, 1)[0], "device_os": "symbian", "region": "atlantis"}
    assert prepare([record], served)["device_os"].tolist() == [["symbian"]]


@pytest.mark.parametrize(
    ("payload", "status", "rule"),
    [(5, 422, "records"), ([], 422, "records"), ([{}, 3], 422, "record"), ([{}] * 11, 413, "max_records")],
)
def test_request_shape_is_checked(payload: Any, status: int, rule: str) -> None:
    with pytest.raises(RequestRejected) as info:
        to_records(payload, max_records=10)
    assert (info.value.status, info.value.rule) == (status, rule)


def test_malformed_json_is_a_400_and_nan_literals_reach_the_field_check() -> None:
    with pytest.raises(RequestRejected) as info:
        parse_json(b'{"age": ')
    assert info.value.status == 400
    assert math.isnan(parse_json(b'{"age": NaN}')["age"])
    assert to_records(parse_json(b'{"age": 1}'), max_records=1) == ([{"age": 1}], True)


def test_warmup_records_pass_the_schema(churn_champion: dict[str, str]) -> None:
    schema = Schema.load(churn_champion["schema"])
    inputs = prepare(warmup_records(schema), Served.of(schema))
    assert all(v.shape == (2, 1) for v in inputs.values())


# ------------------------------------------------------------------------------------------------ holder


def test_holder_is_not_ready_until_a_model_is_loaded(churn_champion: dict[str, str], tmp_path: Path) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    holder = ModelHolder(registry, "churn", "online/challenger")
    assert not holder.ready
    assert holder.refresh() is None
    assert not holder.ready
    registry.promote(churn_champion["version"], "online/challenger", model="churn", reason="test")
    loaded = holder.refresh()
    assert holder.ready
    assert loaded is not None
    assert loaded.id == churn_champion["version"]


def test_holder_follows_the_pointer_and_never_serves_a_broken_version(
    churn_champion: dict[str, str], tmp_path: Path
) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    base = registry.get(churn_champion["version"])
    holder = ModelHolder(registry, "churn", CHANNEL)
    first = holder.refresh()
    assert first is not None
    assert first.id == base.id

    broken = clone_version(registry, base, tmp_path / "broken", note="broken", onnx=b"this is not an ONNX model")
    registry.promote(broken, CHANNEL, model="churn", reason="test: a damaged model")
    assert holder.refresh() is first
    assert broken in holder.failures
    assert holder.refresh() is first  # not retried on every poll

    good = clone_version(registry, base, tmp_path / "good", note="retrained")
    registry.promote(good, CHANNEL, model="churn", reason="test: a good model")
    second = holder.refresh()
    assert second is not None
    assert second.id == good
    assert holder.current is second
    record = demo_records(churn_champion, 1)
    assert predict(second, record).version == good
    assert predict(first, record).predictions[0].probabilities == predict(second, record).predictions[0].probabilities


def test_holder_polls_in_the_background(churn_champion: dict[str, str], tmp_path: Path) -> None:
    import time

    registry = copy_registry(churn_champion, tmp_path / "registry")
    base = registry.get(churn_champion["version"])
    holder = ModelHolder(registry, "churn", CHANNEL)
    holder.refresh()
    holder.start(0.05)
    try:
        new = clone_version(registry, base, tmp_path / "new", note="polled")
        registry.promote(new, CHANNEL, model="churn", reason="test")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (holder.current is None or holder.current.id != new):
            time.sleep(0.05)
        assert holder.current is not None
        assert holder.current.id == new
    finally:
        holder.stop()


def test_a_model_whose_inputs_do_not_match_its_schema_fails_warmup(
    churn_champion: dict[str, str], tmp_path: Path
) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    base = registry.get(churn_champion["version"])
    schema = json.loads(registry.read_bytes(base, "schema.json"))
    schema["features"] = schema["features"][:-1]
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    files = {n: tmp_path / n for n in base.files if n != "schema.json"}
    for n in files:
        files[n].write_bytes(registry.read_bytes(base, n))
    files["schema.json"] = tmp_path / "schema.json"
    vid = registry.register("churn", files, dict(base.info)).id
    holder = ModelHolder(registry, "churn", CHANNEL)
    holder.refresh()
    registry.promote(vid, CHANNEL, model="churn", reason="test: schema and model disagree")
    assert holder.refresh() is not None
    assert holder.current is not None
    assert holder.current.id == base.id
    assert "device_os" in holder.failures[vid]


def test_model_info_carries_schema_and_gate(holder: ModelHolder) -> None:
    assert holder.current is not None
    info = model_info(holder.current, CHANNEL)
    assert info.gate["passed"] is True
    assert info.input_schema["name"] == "churn"
    assert info.metrics["roc_auc"] > 0.7


def test_resolve_model_picks_the_only_model(churn_champion: dict[str, str]) -> None:
    assert ModelHolder.resolve_model(Registry(churn_champion["registry"]), None) == "churn"


# ------------------------------------------------------------------------------------------------ keys


def test_keys_are_checked_by_hash_and_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [
        {"name": "app", "sha256": hash_key("k-predict"), "scopes": ["predict"]},
        {"name": "ops", "sha256": hash_key("k-admin"), "scopes": ["admin", "feedback"]},
        {"name": "old", "sha256": hash_key("k-old"), "scopes": ["predict"], "revoked": True},
    ]
    monkeypatch.setenv("FERRY_ONLINE_API_KEYS", json.dumps(entries))
    settings = OnlineSettings()
    assert all(isinstance(e, ApiKeyEntry) for e in settings.api_keys)
    keys = KeyStore(settings.api_keys)
    assert keys.check("k-predict", "predict").status == 200
    assert keys.check("k-predict", "admin").status == 403
    assert keys.check("k-admin", "feedback").status == 200
    assert keys.check("k-old", "predict").status == 401
    assert keys.check("nope", "predict").status == 401
    assert keys.check(None, "predict").status == 401
    assert keys.check("k-admin", None).status == 200


def test_a_key_is_never_stored_in_clear() -> None:
    with pytest.raises(ValueError, match="sha256"):
        ApiKeyEntry(name="x", sha256="my-secret-key", scopes=("predict",))


# ------------------------------------------------------------------------------------------------ logs and metrics


def _read_log(files: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_prediction_log_drops_pii_and_flushes_per_buffer(
    churn_champion: dict[str, str], holder: ModelHolder, tmp_path: Path
) -> None:
    from ferry.online.logs import PredictionLog

    assert holder.current is not None
    records = demo_records(churn_champion, 25)
    plog = PredictionLog(str(tmp_path / "registry"), "churn", sample_rate=1.0, buffer_rows=10)
    response = predict(holder.current, records[:5])
    assert plog.record(holder.current, records[:5], response) == 5
    assert plog.files == []  # buffered
    more = predict(holder.current, records[5:])
    assert plog.record(holder.current, records[5:], more) == 20
    assert len(plog.files) == 1  # the buffer was full: all 25 rows written
    assert plog.flush() is None
    response = response.model_copy(update={"predictions": response.predictions + more.predictions})
    logged = _read_log(plog.files)
    assert len(logged) == 25
    assert not {"email", "phone", "churned"} & set(logged.columns)
    assert logged["prediction_id"].tolist() == [p.prediction_id for p in response.predictions]
    assert logged["p_positive"].tolist() == [p.probabilities["1"] for p in response.predictions]
    assert logged["customer_id"].tolist() == [r["customer_id"] for r in records]
    assert set(logged["version"]) == {churn_champion["version"]}
    assert all("/models/churn/online/predictions/" in f for f in plog.files)


def test_prediction_log_samples_at_the_configured_rate(churn_champion: dict[str, str], holder: ModelHolder) -> None:
    from ferry.online.logs import PredictionLog

    assert holder.current is not None
    records = demo_records(churn_champion, 2000)
    response = predict(holder.current, records)
    plog = PredictionLog("unused", "churn", sample_rate=0.1, buffer_rows=10_000, seed=3)
    logged = plog.record(holder.current, records, response)
    assert 150 <= logged <= 250
    none = PredictionLog("unused", "churn", sample_rate=0.0, buffer_rows=1)
    assert none.record(holder.current, records, response) == 0


def test_feedback_joins_logged_predictions(churn_champion: dict[str, str], holder: ModelHolder, tmp_path: Path) -> None:
    from ferry.online.logs import FeedbackLog, Flusher, PredictionLog
    from ferry.online.predict import FeedbackItem, check_feedback

    assert holder.current is not None
    records = demo_records(churn_champion, 30)
    url = str(tmp_path / "registry")
    plog = PredictionLog(url, "churn", sample_rate=1.0, buffer_rows=1000)
    flog = FeedbackLog(url, "churn", buffer_rows=1000)
    flusher = Flusher([plog, flog], 3600).start()
    ids = PredictionIds.for_model(url, "churn")
    response = predict(holder.current, records, ids=ids)
    plog.record(holder.current, records, response)
    items = [
        FeedbackItem(prediction_id=p.prediction_id, label=r["churned"])
        for p, r in zip(response.predictions, records, strict=True)
    ]
    flog.record(check_feedback(holder.current, items, ids))
    flusher.stop()
    joined = _read_log(plog.files).merge(_read_log(flog.files), on="prediction_id")
    assert len(joined) == 30
    assert joined["label"].tolist() == [str(r["churned"]) for r in records]
    issued = response.predictions[0].prediction_id
    with pytest.raises(RequestRejected, match=r"\[0\]\.label"):
        check_feedback(holder.current, [FeedbackItem(prediction_id=issued, label="maybe")], ids)


def test_only_ids_the_service_issued_are_accepted(churn_champion: dict[str, str], tmp_path: Path) -> None:
    """Every way an id can be wrong: random, one digit changed in either half, another service's key, the wrong
    length or alphabet. The key is made once and kept, so ids survive a restart."""
    url = str(tmp_path / "registry")
    ids = PredictionIds.for_model(url, "churn")
    issued = [ids.new() for _ in range(200)]
    assert all(ids.valid(i) for i in issued)
    assert len(set(issued)) == 200
    from concurrent.futures import ThreadPoolExecutor

    from ferry.online.ids import NONCE_BLOCK

    with ThreadPoolExecutor(4) as pool:  # across several blocks of nonces, from several threads at once
        many = list(pool.map(lambda _: ids.new(), range(5 * NONCE_BLOCK)))
    assert len(set(many + issued)) == len(many) + len(issued)
    assert all(ids.valid(i) for i in many)
    again = PredictionIds.for_model(url, "churn")  # a restart, or another replica on the same registry
    assert all(again.valid(i) for i in issued)
    other = PredictionIds.for_model(str(tmp_path / "elsewhere"), "churn")
    assert not any(other.valid(i) for i in issued)
    assert PredictionIds.for_model(url, "churn", key="a shared secret of some length").valid(issued[0]) is False
    for pid in issued[:20]:
        for position in (0, 7, 16, 31):
            digit = "0" if pid[position] != "0" else "1"
            assert not ids.valid(pid[:position] + digit + pid[position + 1 :])
    for wrong in (uuid.uuid4().hex, "0" * 32, issued[0][:-1], issued[0] + "0", issued[0].upper(), "", "zz" * 16):
        assert not ids.valid(wrong), wrong


def test_metrics_count_versions_and_scores() -> None:
    from ferry.online.metrics import OnlineMetrics

    metrics = OnlineMetrics()
    metrics.request("v1", "ok")
    metrics.request("v1", "ok")
    metrics.request("v2", "rejected")
    metrics.scores("v1", [0.05, 0.55, 1.0])
    text = metrics.render()
    assert 'ferry_online_requests_total{version="v1",outcome="ok"} 2' in text
    assert 'ferry_online_requests_total{version="v2",outcome="rejected"} 1' in text
    assert 'ferry_online_score_bucket{version="v1",le="0.1"} 1' in text
    assert 'ferry_online_score_bucket{version="v1",le="0.6"} 2' in text
    assert 'ferry_online_score_count{version="v1"} 3' in text


def test_importing_ferry_online_starts_nothing_and_imports_no_bentoml() -> None:
    import subprocess
    import sys

    code = (
        "import sys, threading;"
        "import ferry.online.auth, ferry.online.holder, ferry.online.limits, ferry.online.logs, ferry.online.metrics,"
        " ferry.online.predict, ferry.online.records, ferry.online.routing, ferry.online.settings;"
        "print('bentoml' in sys.modules, threading.active_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "1"]


def _same_inputs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype
        and a[k].shape == b[k].shape
        and np.array_equal(a[k], b[k], equal_nan=a[k].dtype != object)
        for k in a
    )


def test_the_fast_path_agrees_with_ferry_data_on_every_record(churn_champion: dict[str, str]) -> None:
    """Valid records take a pandas-free path; it must give ferry.data's arrays and refuse what ferry.data refuses.

    Both pandas-free paths are checked: numpy over columns (lists) and value by value (a few records).
    """
    from ferry.online.records import SMALL, _columns, _fast_inputs, _small_inputs, slow_inputs

    served = Served.of(Schema.load(churn_champion["schema"]))
    rng = np.random.default_rng(5)
    base = demo_records(churn_champion, 1000)
    edits: list[tuple[str, Any]] = [
        ("plan", "platinum"), ("plan", " basic"), ("plan", ""), ("plan", "   "), ("payment_method", ""),
        ("payment_method", "crypto"), ("device_os", "  "), ("region", "x"), ("region", None), ("contract", None),
        ("age", 17.99), ("age", 120), ("age", 120.01), ("tenure_months", -0.0), ("tenure_months", -1e-9),
        ("total_charges", None), ("satisfaction_score", 0.5), ("num_lines", 50), ("monthly_charges", 1e30),
        ("support_calls", None), ("data_usage_gb", 3), ("region", "r" * 256), ("region", "r" * 257),
        ("device_os", "é" * 300),
    ]  # fmt: skip
    accepted = refused = 0
    for i, record in enumerate(base):
        record = dict(record)
        for _ in range(int(rng.integers(0, 3))):
            name, value = edits[int(rng.integers(len(edits)))]
            record[name] = value
        columns = _columns([record], served)
        fast = _fast_inputs(columns, served)
        small = _small_inputs([record], served)
        try:
            slow = slow_inputs(columns, served, 1)
        except RequestRejected:
            assert fast is None, (i, record)
            assert small is None, (i, record)
            refused += 1
            continue
        assert fast is not None, (i, record)
        assert small is not None, (i, record)
        assert _same_inputs(fast, slow), (i, record)
        assert _same_inputs(small, slow), (i, record)
        accepted += 1
    assert accepted > 200
    assert refused > 200
    batch = demo_records(churn_champion, 500)
    columns = _columns(batch, served)
    fast_batch = _fast_inputs(columns, served)
    assert fast_batch is not None
    assert _same_inputs(fast_batch, slow_inputs(columns, served, len(batch)))
    few = batch[:SMALL]
    small_batch = _small_inputs(few, served)
    assert small_batch is not None
    assert _same_inputs(small_batch, slow_inputs(_columns(few, served), served, len(few)))
    for wrong in ({"age": "40"}, {"age": True}, {"plan": 3}, {"colour": "red"}, {"age": math.inf}):
        assert _small_inputs([*few[:2], {**few[2], **wrong}], served) is None, wrong
    assert _small_inputs([{k: v for k, v in few[0].items() if k != "plan"}], served) is None


# ------------------------------------------------------------------------------------------------ load shedding


def _front_door(app: Any, **policies: Any) -> Any:
    """The front door over a plain ASGI app, with no service attached (admission only), every key valid."""
    from ferry.online.auth import Guard, KeyStore
    from ferry.online.front import Attached, FrontDoor
    from ferry.online.limits import BodyLimit
    from ferry.online.settings import ApiKeyEntry
    from ferry.online.shed import KeyShare, LoadShed

    keys = KeyStore([ApiKeyEntry(name=name, sha256=hash_key(name), scopes=("predict",)) for name in ("app", "device")])
    return FrontDoor(
        app,
        Attached(),
        guard=Guard(keys, open_paths=frozenset({"/readyz"})),
        share=policies.get("share", KeyShare(per_key=100, retry_after_s=1)),
        body=policies.get("body", BodyLimit(max_bytes=1024, timeout_s=5)),
        shed=policies.get("shed", LoadShed(max_in_flight=100, retry_after_s=1)),
    )


async def _call(door: Any, path: str = "/predict", key: str | None = "app", stall: bool = False) -> dict[str, Any]:
    """One request through ``door``: the response start message (status, headers)."""
    import asyncio

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    await door({"type": "http", "method": "POST", "path": path, "headers": headers}, receive, send)
    return sent[0]


def test_load_shedding_answers_503_with_retry_after_and_recovers() -> None:
    import asyncio

    from ferry.online.shed import LoadShed

    async def scenario() -> tuple[list[int], list[dict[str, str]], int, int]:
        gate = asyncio.Event()

        async def slow_app(scope: Any, receive: Any, send: Any) -> None:
            await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        shed = LoadShed(max_in_flight=3, retry_after_s=2)
        front = _front_door(slow_app, shed=shed)

        async def call(path: str = "/predict") -> tuple[int, dict[str, str]]:
            start = await _call(front, path)
            return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}

        busy = [asyncio.ensure_future(call()) for _ in range(3)]
        await asyncio.sleep(0.01)
        over = await asyncio.wait_for(asyncio.gather(*(call() for _ in range(5))), 5)
        probe_task = asyncio.ensure_future(call("/readyz"))  # probes are never shed (it waits on the gate too)
        await asyncio.sleep(0.01)
        gate.set()
        done = await asyncio.wait_for(asyncio.gather(*busy, probe_task), 5)
        after, _ = await asyncio.wait_for(call(), 5)
        return [s for s, _ in over] + [s for s, _ in done], [h for _, h in over], after, shed.shed

    statuses, headers, after, shed_count = asyncio.run(scenario())
    assert statuses == [503] * 5 + [200] * 4
    assert all(h["retry-after"] == "2" for h in headers)
    assert after == 200
    assert shed_count == 5


def test_a_pinned_holder_ignores_the_channel(churn_champion: dict[str, str], tmp_path: Path) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    base = registry.get(churn_champion["version"])
    holder = ModelHolder(registry, "churn", CHANNEL, pinned=base.id[:8])
    first = holder.refresh()
    assert first is not None
    assert first.id == base.id
    new = clone_version(registry, base, tmp_path / "new", note="not for the pinned service")
    registry.promote(new, CHANNEL, model="churn", reason="test")
    assert holder.refresh() is first
    with pytest.raises(ValueError, match="version"):
        OnlineSettings(version="not-hex")


def test_the_request_timeout_outlasts_the_body_timeout() -> None:
    """BentoML's 504 must not come before the front door's 408: a request timeout at or below the body timeout is
    refused, naming both settings."""
    assert OnlineSettings().request_timeout_s > OnlineSettings().body_timeout_s
    assert OnlineSettings(body_timeout_s=60, request_timeout_s=90).request_timeout_s == 90
    for request in (5, 3):
        with pytest.raises(ValueError, match=r"request_timeout_s .* body_timeout_s"):
            OnlineSettings(body_timeout_s=5, request_timeout_s=request)


def test_a_key_gets_its_share_and_a_stalled_body_frees_its_place() -> None:
    """The key share refuses a key's requests past its share with 429 while other keys go on; the body limit
    answers 408 when a body stalls past its time limit (and not much later), and the key's place is free again
    afterwards; a request without a valid key is refused before its body is read."""
    import asyncio

    from ferry.online.limits import BodyLimit
    from ferry.online.shed import KeyShare

    async def scenario() -> tuple[list[int], list[int], float, int, int, int]:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            assert (await receive())["body"] == b"{}"
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        share = KeyShare(per_key=2, retry_after_s=1)
        door = _front_door(app, share=share, body=BodyLimit(max_bytes=1024, timeout_s=0.3))

        async def call(key: str | None, stall: bool = False) -> int:
            return int((await _call(door, key=key, stall=stall))["status"])

        started = time.monotonic()
        stalled = [asyncio.ensure_future(call("device", stall=True)) for _ in range(2)]
        await asyncio.sleep(0.05)
        over = await asyncio.gather(call("device"), call("device"))
        others = [await call("app") for _ in range(5)]  # another key, one after another
        timed_out = await asyncio.wait_for(asyncio.gather(*stalled), 5)
        took = time.monotonic() - started
        after = await call("device")
        stranger = await asyncio.wait_for(call("not-a-key", stall=True), 5)
        return [*over, *others], list(timed_out), took, after, share.refused["device"], stranger

    answered, timed_out, took, after, refused, stranger = asyncio.run(scenario())
    assert answered == [429, 429, 200, 200, 200, 200, 200]
    assert timed_out == [408, 408]
    assert 0.3 <= took < 0.3 * 1.25 + 0.2, took  # the deadline, plus at most a tick of the watcher, plus slack
    assert after == 200
    assert refused == 2
    assert stranger == 401


def test_a_cancelled_body_read_is_not_taken_for_a_timeout() -> None:
    """A read cancelled by someone else (a client gone, a server stopping) stays cancelled: only the reads the
    deadline watcher cancelled become 408s."""
    import asyncio

    from ferry.online.limits import BodyLimit

    async def scenario() -> tuple[bool, int]:
        body = BodyLimit(max_bytes=1024, timeout_s=30)

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {}

        task = asyncio.ensure_future(body.read([], receive))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True, body.timed_out
        return False, body.timed_out

    cancelled, timed_out = asyncio.run(scenario())
    assert cancelled
    assert timed_out == 0


def test_text_longer_than_its_max_length_is_refused_everywhere(churn_champion: dict[str, str]) -> None:
    """Free text is not stored at any length: a categorical value or an id over its limit (the feature's
    max_length, else the schema's max_text_length, 256 by default) is refused online (422, rule max_length, naming
    the field) and by ferry.data (training and batch), and the limit is the schema's to change."""
    schema = Schema.load(churn_champion["schema"])
    record = demo_records(churn_champion, 1)[0]
    served = Served.of(schema)
    assert prepare([{**record, "region": "r" * 256, "customer_id": "c" * 256}], served)
    for field, value in (("region", "r" * 257), ("customer_id", "c" * 257), ("customer_id", [1] * 100)):
        for records in ([{**record, field: value}], [record, {**record, field: value}] * 5):
            with pytest.raises(RequestRejected) as caught:
                prepare(records, served)
            assert caught.value.rule == "max_length"
            assert caught.value.field is not None
            assert caught.value.field.endswith(field)
    frame = pd.DataFrame([{**record, "region": "r" * 300}])
    with pytest.raises(DataValidationError) as refused:
        validate(frame, schema, require_target=False)
    assert (refused.value.column, refused.value.rule) == ("region", "max_length")
    wider = Schema.from_dict({**schema.to_dict(), "max_text_length": 1000})
    assert validate(frame, wider, require_target=False)["region"].iloc[0] == "r" * 300
    assert prepare([{**record, "region": "r" * 300}], Served.of(wider))
    with pytest.raises(ValueError, match="max_length"):
        Schema.from_dict({**schema.to_dict(), "features": [{"name": "x", "type": "numeric", "max_length": 5}]})


def test_the_key_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    """Rotation and revocation without a restart: keys added, revoked and expired in the key file take effect on
    the next request after the change; a file broken mid-edit keeps the keys read last."""
    from datetime import UTC, datetime, timedelta

    path = tmp_path / "keys.json"

    def write(entries: list[dict[str, Any]]) -> None:
        path.write_text(json.dumps(entries))
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a change even within one mtime tick

    write([{"name": "app", "sha256": hash_key("k-1"), "scopes": ["predict"]}])
    fixed = ApiKeyEntry(name="env", sha256=hash_key("k-env"), scopes=("admin",))
    keys = KeyStore([fixed], path, reload_s=0)
    assert keys.check("k-1", "predict").status == 200
    assert keys.check("k-env", "admin").status == 200
    assert keys.check("k-2", "predict").status == 401
    soon = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
    write(
        [
            {"name": "app", "sha256": hash_key("k-1"), "scopes": ["predict"], "revoked": True},
            {"name": "app2", "sha256": hash_key("k-2"), "scopes": ["predict"], "expires_at": soon},
        ]
    )
    assert keys.check("k-1", "predict").why == "revoked_key"
    assert keys.check("k-2", "predict").status == 200
    time.sleep(0.4)
    expired = keys.check("k-2", "predict")
    assert (expired.status, expired.why) == (401, "expired_key")
    assert expired.reason == keys.check(None, "predict").reason == keys.check("nope", "predict").reason
    path.write_text('[{"name": "half an ed')  # an editor's half-written file
    assert keys.check("k-env", "admin").status == 200
    assert keys.check("k-1", "predict").why == "revoked_key"  # the keys read last still hold
    assert keys.errors >= 1
    with pytest.raises(ValueError, match="expires_at"):
        ApiKeyEntry(name="x", sha256=hash_key("x"), scopes=("predict",), expires_at="2030-01-01T00:00:00")  # type: ignore[arg-type]


def test_each_key_gets_its_own_rate_and_daily_quota() -> None:
    """A token bucket per key (rate_per_s, burst) and a count per UTC day (daily_quota): past either, the answer
    says which and how long to wait; keys without limits and other keys are untouched."""
    from datetime import date, timedelta

    from ferry.online.shed import KeyLimits

    now = [0.0]
    day = [date(2026, 11, 29)]
    limits = KeyLimits(clock=lambda: now[0], today=lambda: day[0])
    rated = ApiKeyEntry(name="rated", sha256=hash_key("r"), scopes=("predict",), rate_per_s=2, burst=2)
    quota = ApiKeyEntry(name="quota", sha256=hash_key("q"), scopes=("predict",), daily_quota=3)
    free = ApiKeyEntry(name="free", sha256=hash_key("f"), scopes=("predict",))
    assert [limits.take("rated", rated) for _ in range(2)] == [None, None]
    assert limits.take("rated", rated) == ("rate", 1)
    now[0] += 0.5  # one token back
    assert limits.take("rated", rated) is None
    assert limits.take("rated", rated) == ("rate", 1)
    assert [limits.take("quota", quota) for _ in range(3)] == [None, None, None]
    over = limits.take("quota", quota)
    assert over is not None
    assert over[0] == "daily_quota"
    assert over[1] >= 1
    day[0] += timedelta(days=1)
    assert limits.take("quota", quota) is None
    assert all(limits.take("free", free) is None for _ in range(1000))


def test_the_docs_and_metrics_are_open_only_when_the_settings_say_so() -> None:
    from ferry.online.auth import public_paths
    from ferry.online.settings import OnlineSettings

    paths, prefixes = public_paths(OnlineSettings())
    assert paths == {"/healthz", "/livez", "/readyz", "/metrics"}
    assert prefixes == ()
    paths, prefixes = public_paths(OnlineSettings(docs_require_key=False, metrics_require_key=True))
    assert paths == {"/healthz", "/livez", "/readyz", "/", "/docs", "/docs.json"}
    assert "/static_content/" in prefixes
