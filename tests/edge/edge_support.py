"""Helpers shared by the edge agent's tests (fixtures live in ``tests/edge/conftest.py``): a published repository
and a synced agent (:class:`Setup`), edited bundles, and the agent's commands run as processes."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ferry_edge.agent import Agent
from ferry_edge.bundle import target_name

from ferry.data import validate
from ferry.publish.bundle import build_bundle
from ferry.publish.tufrepo import KeyStore, TufRepository
from ferry.registry import Registry
from ferry.schema import Schema


def agent_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ferry_edge.cli", "--home", str(home), *args]


def edge(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ferry-edge --home HOME ARGS`` as its own process and wait for it."""
    return subprocess.run(
        agent_cmd(home, *args), env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300
    )


HEAVY = ("pandas", "sklearn", "prefect", "bentoml", "ferry")
"""What a device does not have: the agent's commands must run without importing any of them."""

_ALONE = (
    "import json, sys; sys.argv = ['ferry-edge', *sys.argv[1:]]; from ferry_edge.cli import main; rc = main();"
    "print(json.dumps([m for m in json.loads(%r) if m in sys.modules]), file=sys.stderr); sys.exit(rc)"
)


def edge_alone(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``ferry-edge --home HOME ARGS`` in a fresh interpreter (it must succeed); also return which of
    :data:`HEAVY` it imported (the last line of its standard error)."""
    done = subprocess.run(
        [sys.executable, "-c", _ALONE % json.dumps(HEAVY), "--home", str(home), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done, list(json.loads(done.stderr.strip().splitlines()[-1]))


def start_paused(home: Path, step: str, *args: str) -> subprocess.Popen[str]:
    """``ferry-edge ARGS`` (default: sync) in a session of its own, told to pause at install step ``step``."""
    return subprocess.Popen(
        agent_cmd(home, *(args or ("sync",))),
        env={**os.environ, "FERRY_EDGE_PAUSE_AT": step},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    """Read the process's standard error until a line holds ``marker``; return that line."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if marker in line:
            return line
        if not line and proc.poll() is not None:
            raise AssertionError(f"agent exited ({proc.returncode}) before {marker!r}")
    raise AssertionError(f"agent never reached {marker!r}")


def paused_pid(line: str) -> int:
    """The pid in a ``paused at <step> (pid N)`` line."""
    found = re.search(r"\(pid (\d+)\)", line)
    assert found, line
    return int(found.group(1))


def power_loss(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the process and every child of its session at once (the self-test child too), then reap it."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def status(home: Path) -> dict[str, Any]:
    done = edge(home, "status")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "versions").iterdir() if p.name.startswith((".", "incoming")))


NAME = target_name("churn", "edge/stable")


def retar(data: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    """The bundle with its members edited, re-packed (a bundle a compromised build could produce)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    change(members)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return out.getvalue()


class Setup:
    """A published repository with the churn champion, served over HTTP, and an agent that has synced it."""

    def __init__(self, root: Path, champion: dict[str, str], serve: Callable[[Path], str]) -> None:
        self.root = root
        self.registry = Registry(champion["registry"])
        self.version = self.registry.get(champion["version"])
        self.repo_dir = root / "repo"
        self.repo = TufRepository(str(self.repo_dir), KeyStore(root / "keys"))
        self.repo.init()
        self.bundle = build_bundle(self.registry, self.version)
        self.repo.publish(NAME, self.bundle.data, custom={"version": self.version.id})
        self.url = serve(self.repo_dir)
        self.agent = Agent.init(
            root / "device",
            repo_url=self.url,
            model="churn",
            channel="edge/stable",
            trusted_root=self.repo.trusted_root(),
        )
        self.data = champion["data"]
        self.schema = Schema.load(champion["schema"])

    def rows(self, n: int = 50) -> list[dict[str, Any]]:
        frame = validate(pd.read_parquet(self.data).head(n), self.schema, require_target=False)
        out = []
        for _, r in frame.iterrows():
            row: dict[str, Any] = {}
            for f in self.schema.features:
                v = r[f.name]
                row[f.name] = None if v is None or (isinstance(v, float) and np.isnan(v)) else v
            out.append(row)
        return out


def with_version(raw: bytes, version: str) -> bytes:
    manifest = json.loads(raw)
    manifest["version"] = version
    return json.dumps(manifest).encode()


def break_golden(raw: bytes) -> bytes:
    manifest = json.loads(raw)
    manifest["version"] = "v-bad"
    manifest["golden"]["probabilities"][0] = [0.5, 0.5]
    return json.dumps(manifest).encode()
