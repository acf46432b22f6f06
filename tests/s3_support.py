"""An S3-compatible HTTP server for the tests (moto's standalone server, a process of its own) and a fault proxy.

:class:`MotoServer` starts ``moto_server`` on a free 127.0.0.1 port and stops it by its PID. Clients reach it through
s3fs over HTTP, configured the usual way (``AWS_ENDPOINT_URL`` and the ``AWS_*`` credentials), never through an
in-process mock of the client. moto has no way to make its S3 answers fail, so :class:`FaultProxy` stands between
client and server: a real HTTP server that forwards every request and, when told, answers chosen ones with
throttling (503 SlowDown), a 500, or a dropped connection, before or after forwarding them.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ferry.cli.processes import free_port, stop_process

MOTO = str(Path(sys.executable).parent / "moto_server")
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ferry-test",
    "AWS_SECRET_ACCESS_KEY": "ferry-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class MotoServer:
    """``moto_server`` on 127.0.0.1, a process started here and stopped by its PID."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> MotoServer:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [MOTO, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not answer in {timeout_s:g}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace_s=10)

    def require_auth(self, on: bool) -> None:
        """With ``on``, moto checks every request's credentials (it knows none, so it refuses them all)."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=b"0" if on else b"inf",
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


@dataclass
class Fault:
    """Answer requests whose method is ``method`` and whose path contains ``path`` with ``kind``, ``times`` times
    (``-1``: always). Kinds: ``slowdown`` (503), ``internal`` (500), ``drop`` (close without an answer), and
    ``drop-after`` (forward, then close without passing the answer on)."""

    kind: str
    method: str = "PUT"
    path: str = ""
    times: int = 1
    header: str = ""  # only requests that carry this header (e.g. x-amz-copy-source: the copy of a rename)
    hits: int = field(default=0)


class FaultProxy:
    """A forwarding HTTP server in front of ``upstream`` that injects the faults it is given."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.faults: list[Fault] = []
        self.guard = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, *faults: Fault) -> None:
        with self.guard:
            self.faults = list(faults)

    def clear(self) -> list[Fault]:
        with self.guard:
            done, self.faults = self.faults, []
        return done

    def take(self, method: str, path: str, headers: Any) -> str | None:
        with self.guard:
            for fault in self.faults:
                if fault.header and fault.header not in headers:
                    continue
                if fault.method == method and fault.path in path and (fault.times < 0 or fault.hits < fault.times):
                    fault.hits += 1
                    return fault.kind
        return None


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy.take(self.command, self.path, self.headers)
            if fault == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if fault in ("slowdown", "internal"):
                payload = SLOW_DOWN if fault == "slowdown" else INTERNAL
                self.send_response(503 if fault == "slowdown" else 500)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            if fault == "drop-after":
                self.close_connection = True
                self.connection.close()
                return
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


def s3_environ(endpoint: str) -> dict[str, str]:
    """The environment a process needs to reach the test server the usual way."""
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    env.pop("AWS_PROFILE", None)
    return env


def make_bucket(endpoint: str, name: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(
        endpoint_url=endpoint,
        key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        use_listings_cache=False,
    )
    fs.mkdir(name)
