"""The agent as a process: power loss (SIGKILL) at every step of an install, and the daemon's loop and shutdown."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ferry_edge.agent import INSTALL_STEPS, Agent
from ferry_edge.daemon import Schedule
from test_edge_agent import NAME, Setup, _with_version, retar

pytestmark = pytest.mark.slow


def agent_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ferry_edge.cli", "--home", str(home), *args]


def wait_for(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if marker in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"agent exited ({proc.returncode}) before {marker!r}")
    raise AssertionError(f"agent never reached {marker!r}")


@pytest.mark.parametrize("step", INSTALL_STEPS)
def test_power_loss_at_every_install_step(
    step: str, tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]
) -> None:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": _with_version(m["bundle.json"], "v-next")}))
    setup.repo.publish(NAME, newer)
    proc = subprocess.Popen(
        agent_cmd(setup.agent.home, "sync"),
        env={**os.environ, "FERRY_EDGE_PAUSE_AT": step},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(proc, f"paused at {step}")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes the pipes
    after = Agent(setup.agent.home)
    assert after.active().version in (setup.version.id, "v-next")  # exactly one complete model, never a mix
    assert after.active().predict(setup.rows(2))
    result = after.sync()  # the next sync completes the install
    assert after.active().version == "v-next", result
    assert after.status()["active_version"] == "v-next"
    assert not [p for p in (setup.agent.home / "versions").iterdir() if p.name.startswith((".", "incoming"))]


def test_backoff_grows_while_offline_and_jitter_spreads() -> None:
    s = Schedule(interval_s=10, jitter=0.1, max_backoff_s=100)
    rng = random.Random(0)
    waits = [s.next_wait(f, rng) for f in range(6)]
    assert 9 <= waits[0] <= 11
    assert 18 <= waits[1] <= 22
    assert 36 <= waits[2] <= 44
    assert all(90 <= w <= 110 for w in waits[4:])  # capped
    assert len({round(s.next_wait(0, rng), 6) for _ in range(20)}) > 1


def test_daemon_follows_the_channel_and_stops_on_sigterm(
    tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]
) -> None:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    proc = subprocess.Popen(
        agent_cmd(setup.agent.home, "run", "--interval", "0.5", "--jitter", "0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while Agent(setup.agent.home).status()["active_version"] != setup.version.id:
            assert time.monotonic() < deadline, "the daemon never installed the first bundle"
            time.sleep(0.2)
        newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": _with_version(m["bundle.json"], "v-next")}))
        setup.repo.publish(NAME, newer)
        while Agent(setup.agent.home).status()["active_version"] != "v-next":
            assert time.monotonic() < deadline, "the daemon never picked up the new bundle"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out.strip().endswith("stopped")


def test_daemon_reports_an_unreachable_repository_and_keeps_the_model(
    tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]
) -> None:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    config = json.loads((setup.agent.home / "config.json").read_text())
    config["repo_url"] = "http://127.0.0.1:9"  # nothing listens on the discard port
    (setup.agent.home / "config.json").write_text(json.dumps(config))
    from ferry_edge.daemon import run

    assert run(Agent(setup.agent.home), Schedule(interval_s=0.05, max_backoff_s=0.2), max_cycles=3, seed=1) == 0
    status = Agent(setup.agent.home).status()
    assert status["last_error"]
    assert status["active_version"] == setup.version.id
