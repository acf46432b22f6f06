"""Helpers shared by the online service's test modules (fixtures live in ``tests/online/conftest.py``).

Records and expected scores of the session's churn champion, the API keys of the in-process service, a real
``bentoml serve`` subprocess started and stopped by its PID, and a real edge heartbeat.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from ferry.cli.processes import stop_process
from ferry.data import to_onnx_inputs, validate
from ferry.online.auth import hash_key
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer


def demo_records(champion: dict[str, str], n: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """Rows of the training data as JSON records would send them (null for missing, ISO timestamps)."""
    frame = pd.read_parquet(champion["data"]).iloc[offset : offset + n]
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", date_format="iso"))
    return records


def expected_probabilities(champion: dict[str, str], records: list[dict[str, Any]]) -> np.ndarray:
    """What OnnxScorer answers for these records on the same rows, through ferry.data (the batch path)."""
    registry = Registry(champion["registry"])
    version = registry.get(champion["version"])
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    frame = validate(pd.DataFrame(records), schema, require_target=False)
    scorer = OnnxScorer(registry.read_bytes(version, "model.onnx"))
    return np.asarray(scorer.score(to_onnx_inputs(frame, schema)).probabilities)


IN_PROCESS_SERVICE = [
    # bentoml 1.4 (importing bentoml): pathspec deprecated the pattern factory bentoml builds its ignore spec with
    pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning"),
    # bentoml 1.4 (building its IO models): calls a pydantic hook that pydantic 2.11 deprecated
    pytest.mark.filterwarnings(
        "ignore:The `__get_pydantic_core_schema__` method of the `BaseModel` class is deprecated"
        ":pydantic.warnings.PydanticDeprecatedSince211"
    ),
    # bentoml 1.4 (per request): reads model_fields from a model instance, deprecated in pydantic 2.11
    pytest.mark.filterwarnings(
        "ignore:Accessing the 'model_fields' attribute on the instance is deprecated"
        ":pydantic.warnings.PydanticDeprecatedSince211"
    ),
    # starlette 1.x: its TestClient warns that it still runs on httpx
    pytest.mark.filterwarnings(
        "ignore:Using `httpx` with `starlette.testclient` is deprecated"
        ":starlette.exceptions.StarletteDeprecationWarning"
    ),
]
"""The known third-party warnings of tests that import ``bentos/online/service.py`` and drive it in process."""


KEYS = {
    "predict": "key-predict",
    "explain": "key-explain",
    "feedback": "key-feedback",
    "telemetry": "key-telemetry",
    "admin": "key-admin",
    "revoked": "key-revoked",
    "slow": "key-slow",
}


def key_entries() -> list[dict[str, Any]]:
    return [
        {"name": "app", "sha256": hash_key(KEYS["predict"]), "scopes": ["predict"]},
        {"name": "why", "sha256": hash_key(KEYS["explain"]), "scopes": ["explain"]},
        {"name": "labeller", "sha256": hash_key(KEYS["feedback"]), "scopes": ["feedback"]},
        {"name": "devices", "sha256": hash_key(KEYS["telemetry"]), "scopes": ["telemetry"]},
        {"name": "ops", "sha256": hash_key(KEYS["admin"]), "scopes": ["admin"]},
        {"name": "old", "sha256": hash_key(KEYS["revoked"]), "scopes": ["predict", "admin"], "revoked": True},
        {
            "name": "slow",
            "sha256": hash_key(KEYS["slow"]),
            "scopes": ["predict", "explain"],
            "rate_per_s": 0.01,
            "burst": 2,
        },
    ]


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


BENTO_DIR = Path(__file__).resolve().parents[2] / "bentos" / "online"
KEY = "serve-test-key"
ADMIN = "serve-test-admin"
DEVICE = "serve-test-device"
LABELLER = "serve-test-labeller"
METRICS = "serve-test-metrics"
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    registry: Registry

    def post(self, path: str, body: Any = None, *, key: str | None = KEY, timeout: float = 10.0) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=timeout)


def start_server(registry: Registry, tmp: Path, target: str = "service:Online", **env: str) -> Server:
    port = free_port()
    log = tmp / f"serve-{port}.log"
    keys = [
        {"name": "tests", "sha256": hash_key(KEY), "scopes": ["predict"]},
        {"name": "ops", "sha256": hash_key(ADMIN), "scopes": ["admin"]},
        {"name": "devices", "sha256": hash_key(DEVICE), "scopes": ["telemetry"]},
        {"name": "labeller", "sha256": hash_key(LABELLER), "scopes": ["feedback"]},
        {"name": "scraper", "sha256": hash_key(METRICS), "scopes": ["metrics"]},
    ]
    environ = {
        **os.environ,
        "BENTOML_HOME": str(tmp / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
        "FERRY_REGISTRY_URL": registry.url,
        "FERRY_ONLINE_API_KEYS": json.dumps(keys),
        "FERRY_ONLINE_POLL_INTERVAL_S": "0.2",
        **{f"FERRY_ONLINE_{k.upper()}": v for k, v in env.items()},
    }
    bentoml = Path(sys.executable).parent / "bentoml"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
            cwd=BENTO_DIR,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log, registry)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"bentoml serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_server(server)
    raise AssertionError(f"bentoml serve was not ready within {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-4000:]}")


def stop_server(server: Server) -> None:
    """SIGTERM to the server's own PID; SIGKILL to its own process group if it does not stop in time."""
    stop_process(server.process)


def without_explain_file(registry: Registry, version: str, work: Path) -> str:
    """Register a version with ``version``'s files but no ``explain.npz`` (as versions registered before
    explanations existed are), with a lineage note so that it gets a new id; its id."""
    base = registry.get(version)
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in base.files:
        if name == "explain.npz":
            continue
        data = registry.read_bytes(base, name)
        if name == "lineage.json":
            data = json.dumps({**json.loads(data), "note": "no explain.npz"}).encode()
        (work / name).write_bytes(data)
        files[name] = work / name
    return registry.register(base.model, files, dict(base.info)).id


def edge_heartbeat(champion: dict[str, str], home: Path, collector: str, *, token: str | None, rows: int = 40) -> Any:
    """A real ``ferry_edge.telemetry.Heartbeats`` for ``collector`` and one heartbeat it built, with a drift sketch
    over ``rows`` demo records, as a device running the champion would send it."""
    from ferry_edge.telemetry import DriftSketch, Heartbeats

    schema = Schema.load(champion["schema"])
    sketch = DriftSketch(schema.to_dict()["features"])
    sketch.update(demo_records(champion, rows))
    beats = Heartbeats(home, collector, token=token, timeout_s=10)
    status = {
        "device": "pump-17",
        "model": "churn",
        "channel": "edge/stable",
        "active_version": champion["version"],
        "active_sha256": "ab" * 32,
        "last_error": None,
        "stale": False,
    }
    return beats, beats.build(status, sketch)


FLOOD = """
import asyncio, json, signal, sys
host, port, connections = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = b'{"records": {"age": 1}}'
stop = asyncio.Event()
counts = {}

def request(i):
    key = b"" if i % 2 else b"Authorization: Bearer wrong-key-%d\\r\\n" % i
    return (b"POST /predict HTTP/1.1\\r\\nHost: x\\r\\n" + key + b"Content-Type: application/json\\r\\n"
            b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)

async def one(n):
    i = n
    while not stop.is_set():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not stop.is_set():
                writer.write(request(i))
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                status = int(head.split(b" ", 2)[1])
                length = int(head.lower().split(b"content-length:")[1].split(b"\\r\\n")[0])
                await reader.readexactly(length)
                counts[status] = counts.get(status, 0) + 1
                i += connections
                if b"connection: close" in head.lower():
                    break
        except (OSError, asyncio.IncompleteReadError):
            pass
        writer.close()

async def main():
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(one(n)) for n in range(connections)]
    while not counts:
        await asyncio.sleep(0.01)
    print("flooding", flush=True)
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(counts), flush=True)

asyncio.run(main())
"""
"""A client process that floods ``/predict`` over ``connections`` keep-alive connections (connecting again whenever
the server closes one), half without a key and half with wrong ones, until SIGTERM; it prints ``flooding`` once
answered, and its status counts at the end."""


def start_flood(url: str, connections: int) -> subprocess.Popen[str]:
    host, port = url.removeprefix("http://").split(":")
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, host, port, str(connections)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert flood.stdout is not None
    assert flood.stdout.readline().strip() == "flooding"
    return flood


def stop_flood(flood: subprocess.Popen[str]) -> dict[int, int]:
    """Stop the flood by its PID; the count of each status it was answered."""
    stop_process(flood, grace_s=10)
    assert flood.stdout is not None
    with flood.stdout:
        return {int(k): v for k, v in json.loads(flood.stdout.read().strip().splitlines()[-1]).items()}
