"""Local processes the demo and ``ferry serve`` start: ``bentoml serve`` for the online service, and a static file host
for the edge repository. Each binds 127.0.0.1 on a free port by default and is stopped by its own PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ferry import storage
from ferry.errors import FerryError
from ferry.online.tls import TlsFiles
from ferry.settings import StorageSettings

__all__ = [
    "BentoNotFound",
    "Service",
    "ServiceFailed",
    "StaticHost",
    "bento_dir",
    "free_port",
    "serve_command",
    "stop_process",
    "workers_env",
]

BENTO_ENV = "FERRY_BENTO_DIR"
"""Where ``bentos/online`` is, when ferry runs from somewhere other than its source tree."""
REGISTRY_ENV = "FERRY_REGISTRY_URL"
"""The registry the service reads; handed to ``bentoml serve`` as an absolute path when it is local."""
SERVICE_NAME = "ferry-online"
"""The BentoML service's name (``bentos/online/service.py``), under which its configuration is overridden."""
MAX_WORKERS = 64


def workers_env(workers: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that makes ``bentoml serve`` start ``workers`` worker processes of the online service: its
    ``workers`` set through ``BENTOML_CONFIG_OVERRIDES`` (merged with any overrides already in ``environ``)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise FerryError(f"workers must be a whole number from 1 to {MAX_WORKERS}, got {workers!r}")
    raw = (environ if environ is not None else os.environ).get("BENTOML_CONFIG_OVERRIDES") or "{}"
    try:
        overrides = json.loads(raw)
    except ValueError:
        raise FerryError(f"BENTOML_CONFIG_OVERRIDES is not JSON ({raw[:80]!r}); fix or unset it") from None
    if not isinstance(overrides, dict):
        raise FerryError("BENTOML_CONFIG_OVERRIDES must be a JSON object; fix or unset it")
    services = overrides.setdefault("services", {})
    services.setdefault(SERVICE_NAME, {})["workers"] = workers
    return {"BENTOML_CONFIG_OVERRIDES": json.dumps(overrides)}


class BentoNotFound(FerryError, FileNotFoundError):
    """The online service's source directory (``bentos/online``) cannot be found."""


class ServiceFailed(FerryError, RuntimeError):
    """``bentoml serve`` exited or did not become ready in time; the message ends with its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def bento_dir() -> Path:
    """``$FERRY_BENTO_DIR`` when set, else ``bentos/online`` of the source tree or of the working directory."""
    configured = os.environ.get(BENTO_ENV)
    if configured:
        candidates = [Path(configured)]
    else:
        candidates = [Path(__file__).resolve().parents[3] / "bentos" / "online", Path.cwd() / "bentos" / "online"]
    for candidate in candidates:
        if (candidate / "service.py").is_file():
            return candidate
    tried = " or ".join(str(c) for c in candidates)
    raise BentoNotFound(f"no online service (service.py) in {tried}; set {BENTO_ENV} to the bentos/online directory")


def serve_command(host: str, port: int, tls: TlsFiles | None = None) -> list[str]:
    """The ``bentoml serve`` command line for the online service, with this interpreter's bentoml (HTTPS with
    ``tls``)."""
    local = Path(sys.executable).parent / "bentoml"
    exe = str(local) if local.exists() else shutil.which("bentoml")
    if exe is None:
        raise FerryError("bentoml is not installed; install ferry with the `online` extra")
    return [exe, "serve", "service:Online", "--host", host, "--port", str(port), *(tls.bentoml_args() if tls else [])]


def _get(url: str, *, timeout: float, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the response open
            return int(exc.code)


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """SIGTERM to the process's own PID; SIGKILL to its own process group if it has not stopped in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Service:
    """A ``bentoml serve`` subprocess of the online service, ready once its ``/readyz`` answers 200.

    ``env`` is added to this process's environment (``FERRY_REGISTRY_URL``, ``FERRY_ONLINE_*``); its output goes to
    ``log``. With ``tls`` it serves HTTPS, and ``client`` is the TLS context its own requests use (the CA to trust,
    and a client certificate under mutual TLS). Use as a context manager: it starts on entry and is stopped by its
    PID on exit.
    """

    log: Path
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    start_timeout_s: float = 120.0
    tls: TlsFiles | None = None
    client: ssl.SSLContext | None = None
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> Self:
        self.port = self.port or free_port(self.host)
        environ = {"BENTOML_DO_NOT_TRACK": "true", **os.environ, **self.env}
        # bentoml serve runs in the service's directory: a relative registry path must not change its meaning
        environ[REGISTRY_ENV] = storage.portable_url(environ.get(REGISTRY_ENV) or StorageSettings().registry_url)
        environ.update(workers_env(self.workers, environ))
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                serve_command(self.host, self.port, self.tls),
                cwd=bento_dir(),
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceFailed(f"bentoml serve exited with {self.process.returncode}:\n{self._tail()}")
            try:
                if _get(self.url + "/readyz", timeout=2, context=self.client) == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ServiceFailed(f"bentoml serve was not ready within {self.start_timeout_s:.0f} s:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"

    def post(self, path: str, body: Any, *, key: str, timeout: float = 30.0) -> Any:
        """POST JSON with a bearer key and return the decoded answer; an HTTP error raises ServiceFailed."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.client) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ServiceFailed(
                f"POST {path} answered {exc.code}: {exc.read()[:500].decode(errors='replace')}"
            ) from exc

    def metrics(self, timeout: float = 10.0) -> str:
        """The Prometheus text of ``/metrics`` (open, no key)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=timeout, context=self.client) as response:
            text: str = response.read().decode()
        return text

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace_s=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_HTTPS_HOST = """
import functools, http.server, ssl, sys
port, host, directory, cert, key = sys.argv[1:]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
server = http.server.ThreadingHTTPServer((host, int(port)), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""
"""Python's ``http.server`` behind TLS (it has no TLS option of its own before Python 3.14)."""


@dataclass
class StaticHost:
    """Python's ``http.server`` on a directory: a stand-in for nginx, a bucket or a CDN. Stopped by its PID.

    With ``tls`` it serves HTTPS; ``client`` is the TLS context of its own readiness probe (the CA to trust).
    """

    directory: Path
    host: str = "127.0.0.1"
    port: int = 0
    tls: TlsFiles | None = None
    client: ssl.SSLContext | None = None
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> Self:
        self.port = self.port or free_port(self.host)
        if self.tls is None:
            command = [sys.executable, "-m", "http.server", str(self.port), "--bind", self.host]
            command += ["--directory", str(self.directory)]
        else:
            command = [sys.executable, "-c", _HTTPS_HOST, str(self.port), self.host, str(self.directory)]
            command += [str(self.tls.certfile), str(self.tls.keyfile)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                _get(self.url, timeout=1, context=self.client)
                return self
            except OSError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise FerryError(f"the static host on {self.url} did not start: {exc}") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace_s=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
