"""The lock as a lease: real processes racing on the S3 server, a SIGKILLed holder taken over after its lease, and
the takeover rules on the in-memory filesystem."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pytest
from helpers import write_artifacts

from ferry import storage
from ferry.errors import LockTimeout
from ferry.registry import Registry
from ferry.storage import lease

PASSED = {"gate": {"passed": True}}
PROMOTER = """
import pathlib, sys, time
from ferry.registry import Registry
url, version, index, go = sys.argv[1], sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4])
registry = Registry(url, lock_timeout_s=120, actor=f"process-{index}")
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
registry.promote(version, "online/champion", model="churn", reason=f"race {index}")
registry.promote(version, f"online/p{index}", model="churn", reason=f"race {index}")
"""
HOLDER = """
import sys, time
from ferry import storage
fs, root = storage.open_fs(sys.argv[1])
with storage.lock(fs, root + "/.lock", 10, lease_s=float(sys.argv[2])) as me:
    print(me["token"], flush=True)
    time.sleep(600)
"""


@pytest.mark.integration
def test_concurrent_promotions_in_processes_lose_no_move(s3_env: str, tmp_path: Path) -> None:
    url = f"{s3_env}/registry"
    registry = Registry(url, actor="tester")
    n = 4
    versions = [registry.register("churn", write_artifacts(tmp_path / str(i), str(i)), PASSED).id for i in range(n)]
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROMOTER, url, versions[i], str(i), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        go.touch()
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    records = registry.audit("churn")
    assert [r.seq for r in records] == list(range(1, 2 * n + 1))
    assert registry.verify_audit("churn").ok
    channels = registry.channels("churn")
    assert {f"online/p{i}": channels[f"online/p{i}"].version for i in range(n)} == {
        f"online/p{i}": versions[i] for i in range(n)
    }
    champion = channels["online/champion"]
    assert {champion.version, *champion.history} == set(versions)
    fs, root = registry.open_store()
    assert not storage.exists(fs, f"{root}/models/churn/.lock")


@pytest.mark.integration
def test_a_killed_holder_is_taken_over_once_its_lease_runs_out(s3_env: str, caplog: pytest.LogCaptureFixture) -> None:
    url = f"{s3_env}/locks"
    fs, root = storage.open_fs(url)
    path = f"{root}/.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        token = holder.stdout.readline().strip()
        first = storage.read_holder(fs, path)
        assert first is not None
        assert first["token"] == token
        # a live holder renews its lease, and nobody takes it over meanwhile
        deadline = time.monotonic() + 30
        while (renewed := storage.read_holder(fs, path)) is not None and renewed["expires"] == first["expires"]:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.05)
        with pytest.raises(LockTimeout, match="its lease runs until"), storage.lock(fs, path, 1, wait=False):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
    dead = storage.read_holder(fs, path)
    assert dead is not None
    assert dead["token"] == token
    with caplog.at_level(logging.WARNING, logger="ferry.storage.lease"), storage.lock(fs, path, 30) as me:
        assert time.time() > dead["expires"]
        now = storage.read_holder(fs, path)
        assert now is not None
        assert now["token"] == me["token"]
    taken = [r.getMessage() for r in caplog.records if "took over the lock" in r.getMessage()]
    assert len(taken) == 1
    assert f"pid {holder.pid}" in taken[0]
    assert not storage.exists(fs, path)


def test_an_expired_lease_is_taken_over_once_and_a_live_one_never(caplog: pytest.LogCaptureFixture) -> None:
    fs = fsspec.filesystem("memory")
    path = f"/lease-{uuid.uuid4().hex}/.lock"
    stale = {"token": "a" * 32, "pid": 7, "host": "elsewhere", "since": "2026-01-01T00:00:00+00:00", "lease_s": 1}
    fs.pipe_file(path, json.dumps({**stale, "expires": time.time() + 60}).encode())
    with pytest.raises(LockTimeout, match="pid 7 on elsewhere"), storage.lock(fs, path, 0.2, lease_s=5):
        pass
    expired: dict[str, Any] = {**stale, "expires": time.time() - 1}
    fs.pipe_file(path, json.dumps(expired).encode())
    first = {**storage.lock_owner(), "lease_s": 5.0}
    second = {**storage.lock_owner(), "lease_s": 5.0}
    with caplog.at_level(logging.WARNING, logger="ferry.storage.lease"):
        assert lease._take_over(fs, path, expired, first)
        # a second waiter that read the same expired record finds the lock already taken: it must not replace it
        assert not lease._take_over(fs, path, expired, second)
    holder = storage.read_holder(fs, path)
    assert holder is not None
    assert holder["token"] == first["token"]
    assert [r.getMessage() for r in caplog.records].count(
        f"took over the lock {path} from pid 7 on elsewhere (since 2026-01-01T00:00:00+00:00): its lease expired at "
        f"{lease._when(expired['expires'])}"
    ) == 1
    assert fs.ls(path.rpartition("/")[0], detail=False) == [path]  # no claim left behind
    fs.rm(path.rpartition("/")[0], recursive=True)


def test_a_lock_record_without_an_expiry_never_expires() -> None:
    fs = fsspec.filesystem("memory")
    path = f"/lease-{uuid.uuid4().hex}/.lock"
    fs.pipe_file(path, json.dumps({"token": "b" * 32, "pid": 3, "host": "h", "since": "then"}).encode())
    gone = r"delete '.*\.lock' if that process is gone"
    with pytest.raises(LockTimeout, match=gone), storage.lock(fs, path, 0.2, lease_s=0.01):
        pass
    fs.rm(path.rpartition("/")[0], recursive=True)
