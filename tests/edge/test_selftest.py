"""A bundle that fails its self-test is rejected; a self-test that did not complete (the child killed by a signal, as
the out-of-memory killer would, or timed out) postpones the bundle: retried with backoff, a bounded number of times,
and a rejection is cleared by ``ferry-edge retry`` or by a newer targets version."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from edge_support import (
    NAME,
    Setup,
    break_golden,
    edge,
    paused_pid,
    retar,
    start_paused,
    status,
    wait_for,
    with_version,
)
from ferry_edge.agent import Agent
from ferry_edge.errors import BundleRejected, SelfTestIncomplete

pytestmark = pytest.mark.slow


def _configure(setup: Setup, **changes: Any) -> None:
    path = setup.agent.home / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _publish(setup: Setup, version: str) -> str:
    bundle = retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], version)}))
    setup.repo.publish(NAME, bundle)
    return hashlib.sha256(bundle).hexdigest()


def _state(setup: Setup) -> dict[str, Any]:
    return dict(json.loads((setup.agent.home / "state.json").read_text()))


@pytest.fixture
def synced(tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]) -> Setup:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    return setup


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_self_test_killed_by_a_signal_postpones_the_bundle_and_it_installs_later(
    synced: Setup, signum: signal.Signals
) -> None:
    sha = _publish(synced, "v-next")
    _configure(synced, selftest_backoff_s=0)
    proc = start_paused(synced.agent.home, "self-testing")
    try:
        child = paused_pid(wait_for(proc, "paused at self-testing"))
        assert child != proc.pid  # the self-test child, not the agent
        os.kill(child, signum)  # as the out-of-memory killer would
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
    assert proc.returncode == 2, out + err
    failure = json.loads(out)["failure"]
    assert failure["kind"] == "selftest-incomplete"
    assert f"killed by {signum.name}" in failure["message"]
    now = status(synced.agent.home)
    assert now["rejected"] == {}  # not blacklisted
    assert now["pending"][sha]["attempts"] == 1
    assert now["active_version"] == synced.version.id
    result = Agent(synced.agent.home).sync()  # the signed, good bundle installs on the next sync
    assert (result.changed, result.version) == (True, "v-next")
    assert status(synced.agent.home)["pending"] == {}


def test_a_failed_self_test_rejects_at_once_and_is_not_run_again(synced: Setup) -> None:
    broken = retar(synced.bundle.data, lambda m: m.update({"bundle.json": break_golden(m["bundle.json"])}))
    synced.repo.publish(NAME, broken)
    sha = hashlib.sha256(broken).hexdigest()
    with pytest.raises(BundleRejected, match="self-test failed: golden outputs differ"):
        synced.agent.sync()
    entry = status(synced.agent.home)["rejected"][sha]
    assert (entry["kind"], entry["version"]) == ("failed", "v-bad")
    assert status(synced.agent.home)["pending"] == {}
    # Told to pause in a self-test, a sync that ran one would hang; this one answers at once.
    again = edge(synced.agent.home, "sync", env={"FERRY_EDGE_PAUSE_AT": "self-testing"})
    assert again.returncode == 2
    assert "paused" not in again.stderr
    assert "rejected before" in json.loads(again.stdout)["failure"]["message"]


def _seconds_until(stamp: str) -> float:
    return (datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds()


def test_incomplete_self_tests_back_off_doubling_and_are_bounded(synced: Setup) -> None:
    sha = _publish(synced, "v-next")
    _configure(synced, selftest_timeout_s=0.001, selftest_attempts=3, selftest_backoff_s=0.5)
    agent = synced.agent
    waits = []
    for attempt in (1, 2):
        before = datetime.now(UTC)
        with pytest.raises(SelfTestIncomplete, match=rf"did not finish within 0.001 s; attempt {attempt} of 3"):
            agent.sync()
        entry = _state(synced)["pending"][sha]
        assert entry["attempts"] == attempt
        waits.append((datetime.fromisoformat(entry["retry_at"]) - before).total_seconds())
        assert _state(synced)["failure"]["retry_at"] == entry["retry_at"]
        with pytest.raises(SelfTestIncomplete, match="waits until"):  # inside the backoff: no new attempt
            agent.sync()
        assert _state(synced)["pending"][sha]["attempts"] == attempt
        time.sleep(max(0.0, _seconds_until(entry["retry_at"])) + 0.05)  # the deadline the agent wrote down
    assert 0.45 <= waits[0] < 1.0
    assert 0.95 <= waits[1] < 1.5  # doubled
    with pytest.raises(BundleRejected, match="did not complete in 3 attempts"):
        agent.sync()
    now = status(agent.home)
    assert now["rejected"][sha]["kind"] == "incomplete"
    assert now["pending"] == {}
    with pytest.raises(BundleRejected, match="rejected before"):
        agent.sync()
    assert agent.active().version == synced.version.id


def test_a_rejection_is_cleared_by_retry(synced: Setup) -> None:
    sha = _publish(synced, "v-next")
    _configure(synced, selftest_timeout_s=0.001, selftest_attempts=1)
    with pytest.raises(BundleRejected, match="did not complete in 1 attempts"):
        synced.agent.sync()
    _configure(synced, selftest_timeout_s=120)  # the device is calm again
    with pytest.raises(BundleRejected, match="rejected before"):
        synced.agent.sync()
    unknown = edge(synced.agent.home, "retry", "v-unknown")
    assert unknown.returncode == 2
    assert "'v-unknown'" in unknown.stderr
    cleared = edge(synced.agent.home, "retry", "v-next")
    assert cleared.returncode == 0, cleared.stderr
    [entry] = json.loads(cleared.stdout)["cleared"]
    assert (entry["sha256"], entry["version"], entry["was"]) == (sha, "v-next", "rejected")
    assert synced.agent.sync().version == "v-next"
    # The Python API does the same, for every rejected bundle at once.
    sha3 = _publish(synced, "v-3")
    _configure(synced, selftest_timeout_s=0.001)
    with pytest.raises(BundleRejected):
        synced.agent.sync()
    _configure(synced, selftest_timeout_s=120)
    assert [e["sha256"] for e in Agent(synced.agent.home).retry()] == [sha3]
    assert synced.agent.sync().version == "v-3"


def test_a_rejection_is_cleared_by_a_newer_targets_version(synced: Setup) -> None:
    sha = _publish(synced, "v-next")
    _configure(synced, selftest_timeout_s=0.001, selftest_attempts=1)
    with pytest.raises(BundleRejected):
        synced.agent.sync()
    _configure(synced, selftest_timeout_s=120)
    with pytest.raises(BundleRejected, match="rejected before"):
        synced.agent.sync()
    synced.repo.publish("other/edge-stable/bundle.tar", b"another model")  # the publisher signs new targets
    result = synced.agent.sync()
    assert (result.version, result.sha256) == ("v-next", sha)
    assert status(synced.agent.home)["rejected"] == {}
