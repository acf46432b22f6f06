"""Heartbeats: a drift sketch without raw rows, to a folder or an HTTP collector, queued on disk while offline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from edge_support import Setup
from ferry_edge.cli import main as edge_main

from ferry.cli.processes import free_port

COLLECTOR = """
import json, sys, uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
out = Path(sys.argv[2])
token = sys.argv[3] if len(sys.argv) > 3 else None
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if token and self.headers.get("Authorization") != "Bearer " + token:
            self.send_response(401)
        elif json.loads(body).get("device") == "malformed":
            self.send_response(422)
        else:
            (out / (uuid.uuid4().hex + ".json")).write_bytes(body)
            self.send_response(204)
        self.end_headers()
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@pytest.fixture
def collector_port() -> int:
    return free_port()


@pytest.fixture
def collector(collector_port: int, tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Start (on demand) a real HTTP collector that stores every POSTed heartbeat as a file.

    With a token it answers 401 to a request without that bearer token; it answers 422 to device "malformed".
    """
    received = tmp_path / "received"
    received.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(token: str | None = None) -> Path:
        args = [sys.executable, "-c", COLLECTOR, str(collector_port), str(received), *([token] if token else [])]
        procs.append(subprocess.Popen(args))
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{collector_port}/", timeout=1).close()
                return received
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def predict_rows(setup: Setup, tmp_path: Path, n: int) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps(r) for r in setup.rows(n)))
    assert edge_main(["--home", str(setup.agent.home), "predict", str(rows)]) == 0


def test_heartbeat_to_a_folder_carries_a_sketch_and_no_rows(
    tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str], capsys: pytest.CaptureFixture[str]
) -> None:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    predict_rows(setup, tmp_path, 40)
    folder = tmp_path / "collected"
    assert edge_main(["--home", str(setup.agent.home), "heartbeat", "--collector", str(folder)]) == 0
    [beat_file] = list(folder.glob("*.json"))
    beat = json.loads(beat_file.read_text())
    assert beat["version"] == setup.version.id
    assert beat["sha256"] == setup.bundle.sha256
    assert beat["health"]["ok"] is True
    sketch = beat["sketch"]
    assert sketch["rows"] == 40
    assert set(sketch["numeric"]["tenure_months"]) == {"count", "missing", "quantiles"}
    assert set(sketch["numeric"]["tenure_months"]["quantiles"]) == {"p5", "p25", "p50", "p75", "p95"}
    assert sum(sketch["categorical"]["plan"]["counts"].values()) == 40
    text = beat_file.read_text()
    assert "customer_id" not in text
    assert "@" not in text
    assert not (setup.agent.home / "sketch.json").exists()  # the next sketch starts afresh


def test_heartbeats_queue_while_the_collector_is_down_and_flush_later(
    tmp_path: Path,
    churn_champion: dict[str, str],
    serve_dir: Callable[[Path], str],
    collector: Callable[[], Path],
    collector_port: int,
) -> None:
    from ferry_edge.agent import Agent
    from ferry_edge.telemetry import Heartbeats

    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    url = f"http://127.0.0.1:{collector_port}/telemetry"
    beats = Heartbeats(setup.agent.home, url, timeout_s=1)
    status = Agent(setup.agent.home).status()
    assert beats.send(beats.build(status, None)) is False
    assert beats.send(beats.build(status, None)) is False
    assert beats.queued() == 2
    received = collector()
    assert beats.send(beats.build(status, None)) is True
    assert beats.queued() == 0
    got = [json.loads(p.read_text()) for p in received.glob("*.json")]
    assert len(got) == 3
    assert {g["version"] for g in got} == {setup.version.id}


def test_the_queue_is_capped(tmp_path: Path) -> None:
    from ferry_edge.telemetry import Heartbeats

    beats = Heartbeats(tmp_path, "http://127.0.0.1:9/none", queue_cap_bytes=2000, timeout_s=0.5)
    for i in range(30):
        beats.send({"id": str(i), "pad": "x" * 200})
    sizes = sum(p.stat().st_size for p in (tmp_path / "heartbeats").glob("*.json"))
    assert sizes <= 2000
    kept = sorted(json.loads(p.read_text())["id"] for p in (tmp_path / "heartbeats").glob("*.json"))
    assert "29" in kept
    assert "0" not in kept


def test_a_token_is_sent_and_a_refused_heartbeat_never_blocks_the_queue(
    tmp_path: Path,
    churn_champion: dict[str, str],
    serve_dir: Callable[[Path], str],
    collector: Callable[..., Path],
    collector_port: int,
) -> None:
    from ferry_edge.agent import Agent
    from ferry_edge.telemetry import Heartbeats

    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    received = collector("s3cret")
    url = f"http://127.0.0.1:{collector_port}/telemetry"
    status = Agent(setup.agent.home).status()
    anonymous = Heartbeats(setup.agent.home, url, timeout_s=2)
    assert anonymous.send(anonymous.build(status, None)) is False  # 401: kept for later, not dropped
    assert anonymous.queued() == 1
    assert anonymous.refused == []

    beats = Heartbeats(setup.agent.home, url, token="s3cret", timeout_s=2)
    bad = beats.build({**status, "device": "malformed"}, None)
    assert beats.send(bad) is False  # 422: dropped, with the reason
    assert beats.queued() == 0
    assert len(beats.refused) == 1
    assert "422" in beats.refused[0]
    assert len(list(received.glob("*.json"))) == 1  # the queued one went out first, with the token

    beats._enqueue(json.dumps(bad).encode())
    assert beats.send(beats.build(status, None)) is True  # a refused queued heartbeat does not block this one
    assert beats.queued() == 0
    assert len(list(received.glob("*.json"))) == 2
