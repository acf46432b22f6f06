"""Helpers shared by the edge agent's process-level tests (not fixtures: those live in conftest.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def agent_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ferry_edge.cli", "--home", str(home), *args]


def edge(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ferry-edge --home HOME ARGS`` as its own process and wait for it."""
    return subprocess.run(
        agent_cmd(home, *args), env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300
    )


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
