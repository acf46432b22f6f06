"""The agent as a process: power loss (SIGKILL) at every step of an install, and the daemon's loop and shutdown."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from edge_support import (
    NAME,
    Setup,
    agent_cmd,
    edge,
    leftovers,
    power_loss,
    retar,
    start_paused,
    status,
    wait_for,
    with_version,
)
from ferry_edge.agent import INSTALL_STEPS, Agent
from ferry_edge.daemon import Schedule

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("step", INSTALL_STEPS)
def test_power_loss_at_every_install_step(
    step: str, tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]
) -> None:
    """Killed at any step, the device answers with exactly one complete model, and ``status`` (so the heartbeat too)
    names the model ``predict`` answers with; the next start collects the leftovers; the next sync finishes."""
    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
    setup.repo.publish(NAME, newer)
    sha_of = {setup.version.id: setup.bundle.sha256, "v-next": hashlib.sha256(newer).hexdigest()}
    home = setup.agent.home
    proc = start_paused(home, step)
    wait_for(proc, f"paused at {step}")
    power_loss(proc)

    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps(r) for r in setup.rows(2)))
    predicted = edge(home, "predict", str(rows))
    assert predicted.returncode == 0, predicted.stderr
    served = {json.loads(line)["version"] for line in predicted.stdout.splitlines()}
    assert len(served) == 1
    [version] = served
    assert version in sha_of  # exactly one complete model, never a mix
    reported = status(home)
    assert (reported["active_version"], reported["active_sha256"]) == (version, sha_of[version]), step
    assert leftovers(home) == [], step  # collected at this start
    beat = edge(home, "heartbeat", "--collector", str(tmp_path / "beats"))
    assert beat.returncode == 0, beat.stderr
    [sent] = [json.loads(p.read_text()) for p in (tmp_path / "beats").glob("*.json")]
    assert (sent["version"], sent["sha256"]) == (version, sha_of[version])

    after = Agent(home)
    result = after.sync()  # the next sync completes the install
    assert after.active().version == "v-next", result
    assert (after.status()["active_version"], after.status()["active_sha256"]) == ("v-next", sha_of["v-next"])
    assert leftovers(home) == []
    assert len(list((home / "versions").iterdir())) == 2  # the new model and the previous one, nothing else


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
        newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
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


def test_a_running_install_is_not_collected_as_a_leftover(
    tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]
) -> None:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    setup.repo.publish(
        NAME, retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
    )
    proc = start_paused(setup.agent.home, "unpacked")
    try:
        wait_for(proc, "paused at unpacked")
        assert status(setup.agent.home)["active_version"] == setup.version.id  # a start while the sync runs
        assert [p for p in leftovers(setup.agent.home) if p.startswith("incoming-")], "the running install was removed"
    finally:
        power_loss(proc)
    assert status(setup.agent.home)["active_version"] == setup.version.id
    assert leftovers(setup.agent.home) == []  # once it died, the next start collects it
