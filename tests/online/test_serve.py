"""The online service as users run it: a real ``bentoml serve`` subprocess on 127.0.0.1, stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import clone_version, copy_registry
from online_support import (
    ADMIN,
    BENTO_DIR,
    DEVICE,
    KEY,
    LABELLER,
    METRICS,
    START_TIMEOUT_S,
    Server,
    demo_records,
    edge_heartbeat,
    expected_probabilities,
    start_flood,
    start_server,
    stop_flood,
    stop_server,
)

from ferry.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(churn_champion: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    registry = copy_registry(churn_champion, tmp / "registry")
    running = start_server(registry, tmp, log_flush_interval_s="0.5", api_keys_file=str(tmp / "keys.json"))
    try:
        yield running
    finally:
        stop_server(running)


def test_served_predictions_equal_onnx_scorer(server: Server, churn_champion: dict[str, str]) -> None:
    records = demo_records(churn_champion, 20, offset=300)
    response = server.post("/predict", {"records": records})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == churn_champion["version"]
    got = [[p["probabilities"]["0"], p["probabilities"]["1"]] for p in body["predictions"]]
    assert got == expected_probabilities(churn_champion, records).astype(float).tolist()


def test_probes_and_metrics_are_open_and_apis_are_not(server: Server) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert httpx.get(server.url + path, timeout=10).status_code == 200, path
    assert (
        'ferry_online_http_requests_total{endpoint="/readyz",status="200"}'
        in httpx.get(server.url + "/metrics", timeout=10).text
    )
    assert httpx.get(server.url + "/docs.json", timeout=10).status_code == 401  # the docs need a key by default
    assert httpx.get(server.url + "/docs.json", headers={"X-API-Key": KEY}, timeout=10).status_code == 200
    assert server.post("/model", key=None).status_code == 401
    assert server.post("/model", key="wrong").status_code == 401
    assert server.post("/model", key=ADMIN).status_code == 403
    assert server.post("/model").status_code == 200


def test_a_key_made_by_ferry_keys_works_at_once_and_a_revoked_one_gets_401(
    server: Server, churn_champion: dict[str, str]
) -> None:
    """``ferry keys create`` writes the key file the running service reads: the new key is answered without a
    restart, and once ``ferry keys revoke`` has run it gets 401."""
    from typer.testing import CliRunner

    from ferry.cli import app

    key_file = str(server.log.parent / "keys.json")
    created = CliRunner().invoke(app, ["keys", "create", "late", "-s", "predict", "--file", key_file])
    assert created.exit_code == 0, created.stderr
    secret = created.stdout.strip()
    record = demo_records(churn_champion, 1)[0]
    assert wait_for(lambda: server.post("/predict", {"records": record}, key=secret).status_code == 200, 10)
    revoked = CliRunner().invoke(app, ["keys", "revoke", "late", "--file", key_file])
    assert revoked.exit_code == 0, revoked.stderr
    assert wait_for(lambda: server.post("/predict", {"records": record}, key=secret).status_code == 401, 10)
    assert server.post("/predict", {"records": record}).status_code == 200  # the other keys are untouched


def test_bad_input_gets_4xx_over_http(server: Server, churn_champion: dict[str, str]) -> None:
    record = demo_records(churn_champion, 1)[0]
    bad = server.post("/predict", {"records": {**record, "plan": "platinum"}})
    assert bad.status_code == 422
    assert "plan" in bad.text
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    malformed = httpx.post(server.url + "/predict", content=b'{"records": [', headers=headers, timeout=10)
    assert malformed.status_code == 400
    huge = httpx.post(server.url + "/predict", content=b"[" + b" " * (2 << 20) + b"]", headers=headers, timeout=10)
    assert huge.status_code == 413


@dataclass
class Load:
    """A client loop in a thread: counts statuses and answering versions until stopped."""

    server: Server
    record: dict[str, Any]
    statuses: Counter[int] = field(default_factory=Counter)
    versions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=self.server.url, headers=headers, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/predict", json={"records": self.record})
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    version = response.json()["version"]
                    if not self.versions or self.versions[-1] != version:
                        self.versions.append(version)


def wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_swap_under_load_drops_nothing_and_a_broken_model_never_serves(
    server: Server, churn_champion: dict[str, str], tmp_path: Path
) -> None:
    registry = server.registry
    base = registry.get(churn_champion["version"])
    load = Load(server, demo_records(churn_champion, 1)[0])
    threads = [threading.Thread(target=load.run, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: sum(load.statuses.values()) >= 20, 30)
        new = clone_version(registry, base, tmp_path / "new", note="swap under load")
        registry.promote(new, "online/champion", model="churn", reason="test: swap under load")
        assert wait_for(lambda: load.versions[-1:] == [new], 30), load.versions
        broken = clone_version(registry, base, tmp_path / "broken", note="broken", onnx=b"not a model")
        registry.promote(broken, "online/champion", model="churn", reason="test: a broken model")
        served_before = sum(load.statuses.values())
        assert wait_for(lambda: sum(load.statuses.values()) >= served_before + 50, 30)
        after = channel_reads(server)
        assert wait_for(lambda: channel_reads(server) >= after + 3, 30)  # the broken version was read, and refused
    finally:
        load.stop.set()
        for t in threads:
            t.join(15)
    assert load.errors == []
    assert set(load.statuses) == {200}, load.statuses
    assert load.versions[0] == base.id
    assert load.versions[-1] == new
    assert broken not in load.versions
    assert server.post("/model").json()["version"] == new
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert f'ferry_online_requests_total{{version="{new}",outcome="ok"}}' in metrics
    assert f'ferry_online_score_count{{version="{base.id}"}}' in metrics
    assert "gets no traffic" in server.log.read_text()


def channel_reads(server: Server, channel: str = "online/champion") -> int:
    """How often the service has read ``channel``'s pointer, from /metrics."""
    text = httpx.get(server.url + "/metrics", timeout=5).text
    line = f'ferry_online_channel_reads_total{{channel="{channel}"}} '
    return sum(int(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line))


def in_progress(server: Server, endpoint: str = "/predict") -> float:
    """The service's gauge of requests in progress on ``endpoint``, read from /metrics."""
    text = httpx.get(server.url + "/metrics", timeout=5).text
    prefix = "ferry_online_http_requests_in_progress{"
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and f'endpoint="{endpoint}"' in line
    )


def test_sigterm_lets_requests_in_flight_complete(churn_champion: dict[str, str], tmp_path: Path) -> None:
    """SIGTERM to `bentoml serve` (the arbiter) while three requests are being handled: all three get their 200.

    "In flight" means the worker has taken the request (the service's in-progress gauge counts it). A connection still
    waiting in the kernel's accept queue when the worker stops listening never reaches the service; it is reset when
    the arbiter closes the listening socket, and a client or load balancer retries it elsewhere.
    """
    registry = copy_registry(churn_champion, tmp_path / "registry")
    running = start_server(
        registry, tmp_path, max_records="6000", max_body_bytes=str(16 << 20), request_timeout_s="120"
    )  # slow requests on purpose: past the default request timeout on a busy machine
    records = demo_records(churn_champion, 6000)  # a request that takes a while to check and score
    results: list[int | str] = []

    def call() -> None:
        try:
            results.append(running.post("/predict", {"records": records}, timeout=60).status_code)
        except httpx.HTTPError as exc:
            results.append(repr(exc))

    try:
        callers = [threading.Thread(target=call) for _ in range(3)]
        for t in callers:
            t.start()
        assert wait_for(lambda: in_progress(running) >= 3, 30), in_progress(running)
        running.process.send_signal(signal.SIGTERM)
        for t in callers:
            t.join(60)
        assert running.process.wait(timeout=30) is not None
    finally:
        stop_server(running)
    assert results == [200, 200, 200], results


def test_bentoml_build_works_offline(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "home"), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = Path(sys.executable).parent / "bentoml"
    done = subprocess.run(
        [str(bentoml), "build", "--output", "tag"], cwd=BENTO_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    built = list((tmp_path / "home" / "bentos" / "ferry-online").glob("*/bento.yaml"))
    assert len(built) == 1
    assert (built[0].parent / "src" / "service.py").read_bytes() == (BENTO_DIR / "service.py").read_bytes()
    assert "ferry[online]" in (built[0].parent / "env" / "python" / "requirements.txt").read_text()


def test_a_bento_built_by_build_py_serves_the_version_it_was_pinned_to(
    churn_champion: dict[str, str], tmp_path: Path
) -> None:
    """build.py pins online/champion's version into the bento (offline); the served bento keeps it after a promotion."""
    registry = copy_registry(churn_champion, tmp_path / "registry")
    base = registry.get(churn_champion["version"])
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "bentoml-home"),  # start_server serves from the same home
        "BENTOML_DO_NOT_TRACK": "true",
        "FERRY_REGISTRY_URL": registry.url,
        "HTTP_PROXY": "http://127.0.0.1:9",  # no network: a build that tried to reach an index would fail
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "build.py", "--output", "tag"], cwd=BENTO_DIR, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("ferry-online:"), done.stdout
    info = (tmp_path / "bentoml-home" / "bentos" / "ferry-online" / tag.split(":")[1] / "bento.yaml").read_text()
    assert f"version: {base.id}" in info
    new = clone_version(registry, base, tmp_path / "new", note="promoted after the build")
    registry.promote(new, "online/champion", model="churn", reason="test: the bento stays pinned")
    running = start_server(registry, tmp_path, target=tag)
    try:
        assert wait_for(lambda: channel_reads(running) >= 3, 30)  # several reads since the promotion
        assert running.post("/model").json()["version"] == base.id
        answer = running.post("/predict", {"records": demo_records(churn_champion, 1)[0]})
        assert answer.json()["version"] == base.id
    finally:
        stop_server(running)


def test_overload_is_shed_with_503_and_retry_after_never_504(churn_champion: dict[str, str], tmp_path: Path) -> None:
    registry = copy_registry(churn_champion, tmp_path / "registry")
    running = start_server(registry, tmp_path, max_in_flight="2", max_in_flight_per_key="16")  # one key, many calls
    records = demo_records(churn_champion, 1000)  # each request takes a while, so 16 at once overload 2 slots
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            response = running.post("/predict", {"records": records}, timeout=60)
            outcome = (response.status_code, response.headers.get("retry-after"))
        except httpx.HTTPError as exc:
            outcome = (-1, repr(exc))
        with lock:
            results.append(outcome)

    try:
        callers = [threading.Thread(target=call) for _ in range(16)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(90)
        statuses = Counter(status for status, _ in results)
        assert set(statuses) <= {200, 503}, results
        assert statuses[503] >= 1, statuses
        assert statuses[200] >= 2, statuses
        assert all(retry == "1" for status, retry in results if status == 503)
        assert running.post("/predict", {"records": records[:1]}).status_code == 200  # recovered
    finally:
        stop_server(running)


def test_an_edge_heartbeat_is_received_and_stored(
    server: Server, churn_champion: dict[str, str], tmp_path: Path
) -> None:
    """ferry_edge's own Heartbeats client posts to the served /telemetry; the monitor flow finds it in Parquet."""
    import pandas as pd

    url = server.url + "/telemetry"
    beats, beat = edge_heartbeat(churn_champion, tmp_path / "device", url, token=DEVICE)
    assert beats.send(beat) is True, beats.refused
    assert beats.send({**beat, "health": {"ok": "perhaps"}}) is False  # malformed: refused with 422, dropped
    assert len(beats.refused) == 1
    assert "422" in beats.refused[0]
    assert "health.ok" in beats.refused[0]
    assert beats.queued() == 0
    stranger, other = edge_heartbeat(churn_champion, tmp_path / "stranger", url, token=KEY)  # a predict key
    assert stranger.send(other) is False  # 403: kept for later, not dropped
    assert stranger.queued() == 1
    malformed = httpx.post(url, content=b"{", headers={"Authorization": f"Bearer {DEVICE}"}, timeout=10)
    assert malformed.status_code == 400

    root = Path(server.registry.url) / "models" / "churn" / "online" / "telemetry"

    def stored() -> list[str]:
        files = sorted(root.rglob("*.parquet"))
        return [] if not files else list(pd.concat([pd.read_parquet(f) for f in files])["id"])

    assert wait_for(lambda: beat["id"] in stored(), 15)
    assert stored().count(beat["id"]) == 1
    assert other["id"] not in stored()


def _feedback_ids(registry: Registry) -> list[str]:
    import pandas as pd

    files = sorted((Path(registry.url) / "models" / "churn" / "online" / "feedback").rglob("*.parquet"))
    return [str(i) for f in files for i in pd.read_parquet(f)["prediction_id"]]


def _holders(path: Path) -> list[int]:
    """PIDs of the processes that hold ``path`` open (read from /proc)."""
    pids = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                pids.append(int(fd_dir.parent.name))
        except OSError:  # the process ended, or is not ours to read
            continue
    return pids


def test_acknowledged_feedback_survives_kill_9_of_the_worker(churn_champion: dict[str, str], tmp_path: Path) -> None:
    """Labels answered ``{"stored": n}`` are on disk: SIGKILL to the worker that answered, right after the answer
    and long before its next flush, loses none; the worker BentoML starts in its place writes them to the registry."""
    registry = copy_registry(churn_champion, tmp_path / "registry")
    before = _feedback_ids(registry)
    server = start_server(registry, tmp_path, log_flush_interval_s="3600")
    try:
        assert "ferry_online_log_writer_alive 1" in httpx.get(server.url + "/metrics", timeout=10).text
        records = demo_records(churn_champion, 20)
        answer = server.post("/predict", {"records": records})
        assert answer.status_code == 200, answer.text
        ids = [p["prediction_id"] for p in answer.json()["predictions"]]
        items = [{"prediction_id": i, "label": r["churned"]} for i, r in zip(ids, records, strict=True)]
        for chunk in (items[:7], items[7:]):
            ack = server.post("/feedback", {"items": chunk}, key=LABELLER)
            assert ack.status_code == 200, ack.text
            assert ack.json() == {"stored": len(chunk)}
        (segment,) = (Path(registry.url) / "models" / "churn" / "online" / "wal" / "feedback").glob("*.jsonl")
        (worker,) = _holders(segment)
        os.kill(worker, signal.SIGKILL)
        assert _feedback_ids(registry) == before  # nothing had reached the registry: only the write-ahead file
        deadline = time.monotonic() + START_TIMEOUT_S
        while sorted(_feedback_ids(registry)) != sorted(before + ids) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert sorted(_feedback_ids(registry)) == sorted(before + ids)
        assert not segment.exists()
    finally:
        stop_server(server)


def _stall(url: str, key: str, path: str = "/telemetry") -> socket.socket:
    """A client that sends its headers and the start of a body, then stalls (holding the connection open)."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    conn.sendall(head.encode() + b'{"id": "')
    return conn


def _status_if_answered(conn: socket.socket, wait_s: float) -> int | None:
    """The status line's code if the server answered within ``wait_s``, else None (still waiting for the body)."""
    conn.settimeout(wait_s)
    try:
        data = conn.recv(4096)
    except TimeoutError:
        return None
    return int(data.split(b" ", 2)[1]) if data else -1


def _p99_ms(server: Server, record: dict[str, Any], n: int) -> tuple[float, Counter[int]]:
    took, codes = [], Counter[int]()
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
        for _ in range(n):
            started = time.perf_counter()
            codes[client.post(server.url + "/predict", json={"records": record}).status_code] += 1
            took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return took[int(0.99 * (len(took) - 1))], codes


def test_stalled_clients_with_a_valid_key_cannot_lock_out_the_others(
    churn_champion: dict[str, str], tmp_path: Path
) -> None:
    """40 connections with a telemetry-only key send headers and part of a body, then stall. They take no slot
    (a slot is taken once the body is in), and past the key's share (half of the 32 slots) they are refused with
    429 at once; a predict client's requests keep succeeding within 2x of their p99 without the stalled clients.
    A stalled body gets 408 once the body timeout passes, and a stalled client without a key is refused before its
    body. The p99s are the best of three rounds, each measured with and without the stalled clients in turn, so
    that other work on the machine weighs on both alike."""
    registry = copy_registry(churn_champion, tmp_path / "registry")
    server = start_server(registry, tmp_path, body_timeout_s="60", request_timeout_s="90")
    record = demo_records(churn_champion, 1)[0]
    stalled: list[socket.socket] = []
    before: list[float] = []
    during: list[float] = []
    try:
        _p99_ms(server, record, 50)  # warm up
        for _ in range(3):
            before.append(_p99_ms(server, record, 200)[0])
            stalled = [_stall(server.url, DEVICE) for _ in range(40)]
            answered = [_status_if_answered(conn, 0.5) for conn in stalled]
            assert Counter(answered) == Counter({None: 16, 429: 24}), Counter(answered)
            p99, codes = _p99_ms(server, record, 200)
            assert codes == Counter({200: 200})
            during.append(p99)
            for conn in stalled:
                conn.close()
            stalled = []
        assert min(during) <= 2 * min(before), (during, before)
        stranger = _stall(server.url, "not-a-key")
        assert _status_if_answered(stranger, 5) == 401
        stranger.close()
    finally:
        for conn in stalled:
            conn.close()
        stop_server(server)
    (tmp_path / "short").mkdir()
    server = start_server(registry, tmp_path / "short", body_timeout_s="1")
    try:
        conn = _stall(server.url, DEVICE)
        started = time.monotonic()
        assert _status_if_answered(conn, 10) == 408
        assert time.monotonic() - started < 5
        conn.close()
    finally:
        stop_server(server)


def test_unknown_paths_leave_metrics_the_same_size(churn_champion: dict[str, str], tmp_path: Path) -> None:
    """2,000 requests to unique unknown paths, without a key and with one, leave /metrics within a few hundred
    bytes of its size before (every unknown path shares the label ``other``); with FERRY_ONLINE_METRICS_REQUIRE_KEY
    /metrics answers only a key with the metrics scope."""
    import asyncio

    registry = copy_registry(churn_champion, tmp_path / "registry")
    server = start_server(registry, tmp_path, metrics_require_key="true", tarpit_s="0")  # 1,000 401s, none held
    try:
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401
        assert httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 403
        scrape = {"Authorization": f"Bearer {METRICS}"}
        for path in ("/nope-0", "/nope-1"):  # every label set the unknown paths can make exists now
            for key in (None, KEY):
                server.post(path, {}, key=key)
        before = httpx.get(server.url + "/metrics", headers=scrape, timeout=10)
        assert before.status_code == 200
        assert 'endpoint="other"' in before.text

        async def flood() -> Counter[int]:
            seen: Counter[int] = Counter()
            limits = httpx.Limits(max_connections=8)
            async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
                for start in range(0, 2_000, 200):
                    answers = await asyncio.gather(
                        *(
                            client.post(
                                f"/{uuid.uuid4().hex}/{i}", headers={"Authorization": f"Bearer {KEY}"} if i % 2 else {}
                            )
                            for i in range(start, start + 200)
                        )
                    )
                    seen.update(a.status_code for a in answers)
            return seen

        statuses = asyncio.run(flood())
        assert all(400 <= s < 500 for s in statuses), statuses
        after = httpx.get(server.url + "/metrics", headers=scrape, timeout=10)
        assert abs(len(after.content) - len(before.content)) < 500, (len(before.content), len(after.content))
    finally:
        stop_server(server)


def test_a_flood_without_valid_keys_leaves_a_keyed_client_within_2x_of_its_p99(
    server: Server, churn_champion: dict[str, str]
) -> None:
    """A client process floods /predict over 16 connections, half without a key and half with wrong keys; every
    one of its requests gets 401 before its body is read and before it takes a slot, and once its host is a suspect
    those 401s wait in the tarpit. A keyed client on the same host is never held: its p99 during the flood stays
    within 2x of its p99 without it (best of three rounds each, measured in turn, so that other work on the machine
    weighs on both alike)."""
    record = demo_records(churn_champion, 1)[0]
    _p99_ms(server, record, 50)  # warm up
    before: list[float] = []
    during: list[float] = []
    refused: Counter[int] = Counter()
    for _ in range(3):
        before.append(_p99_ms(server, record, 200)[0])
        flood = start_flood(server.url, 16)
        try:
            p99, codes = _p99_ms(server, record, 200)
        finally:
            refused.update(stop_flood(flood))
        assert codes == Counter({200: 200})
        during.append(p99)
    assert set(refused) == {401}, refused
    assert min(during) <= 2 * min(before), (during, before, refused)
    metrics = httpx.get(server.url + "/metrics", timeout=10)  # the flood's host is a suspect, and its 401s were held
    tarpitted = int(metrics.text.split("ferry_online_tarpitted_total ")[1].split()[0])
    assert tarpitted > 0, metrics.text[-2000:]
