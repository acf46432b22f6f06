"""Two runs writing one output never interleave: the second fails at once, naming the output and the holder; a
killed holder's lock does not block the next run. Real processes, real ``ferry score``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from batch_support import read_scores, without_time

from ferry import batch
from ferry.batch import BatchSettings, OutputDir, OutputLocked, output_lock
from ferry.registry import Registry

SCORE = "from ferry.cli import app; app()"
NO_DRIFT = BatchSettings(drift=False)


def slow_input(champion: dict[str, str], where: Path, parts: int = 12) -> Path:
    table = pq.read_table(champion["data"])
    where.mkdir()
    step = table.num_rows // parts
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), where / f"p{i:02d}.parquet")
    return where


def start_score(champion: dict[str, str], source: Path, out: Path, batch_rows: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "FERRY_BATCH_BATCH_ROWS": str(batch_rows),
        "FERRY_BATCH_DRIFT": "false",  # the lock is under test, not the drift check (its process imports Evidently)
        "FERRY_REGISTRY_URL": champion["registry"],
        "COLUMNS": "300",
    }
    cmd = [sys.executable, "-c", SCORE, "score", "--input", str(source), "--output", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_holder(lock: Path, proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the first run ended before the second started: {proc.communicate()}"
        if lock.exists() and lock.stat().st_size > 0:
            found = json.loads(lock.read_text())
            assert isinstance(found, dict)
            return found
        time.sleep(0.01)
    raise AssertionError("the first run never took the lock")


@pytest.mark.slow
def test_a_second_process_on_the_same_output_fails_clearly(tmp_path: Path, writable_champion: dict[str, str]) -> None:
    source = slow_input(writable_champion, tmp_path / "in")
    out = tmp_path / "out"
    first = start_score(writable_champion, source, out, batch_rows=100)
    try:
        holder = wait_for_holder(out / "_lock", first)
        first.send_signal(signal.SIGSTOP)  # held mid-run, however fast it scores, until the second has tried
        assert holder["pid"] == first.pid
        second = start_score(writable_champion, source, out, batch_rows=100)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2
        message = " ".join(err.split())
        assert f"output {out} is being written by another run" in message
        assert f"pid {first.pid}" in message
        assert "score --input" in message  # the holder's command
        assert f"delete {out / '_lock'}" in message
        first.send_signal(signal.SIGCONT)
        assert first.poll() is None  # the first run was not disturbed
        _, err1 = first.communicate(timeout=300)
        assert first.returncode == 0, err1
    finally:
        if first.poll() is None:
            first.kill()
    # the output is exactly one clean run's
    registry = Registry(writable_champion["registry"])
    clean = batch.score(str(source), str(tmp_path / "clean"), registry, settings=NO_DRIFT)
    got = read_scores(out)
    assert got["customer_id"].is_unique
    assert len(got) == clean.scored
    assert without_time(got).equals(without_time(read_scores(tmp_path / "clean")))
    # released: the next run goes through (and skips everything)
    again = start_score(writable_champion, source, out, batch_rows=1000)
    stdout, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "12 finished earlier" in stdout


@pytest.mark.slow
def test_a_killed_holder_does_not_block_the_next_run(tmp_path: Path, writable_champion: dict[str, str]) -> None:
    source = slow_input(writable_champion, tmp_path / "in")
    out = tmp_path / "out"
    first = start_score(writable_champion, source, out, batch_rows=10)
    try:
        wait_for_holder(out / "_lock", first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    summary = batch.score(str(source), str(out), Registry(writable_champion["registry"]), settings=NO_DRIFT)
    assert summary.rows == pq.read_table(writable_champion["data"]).num_rows // 12 * 12


def test_lock_in_process_and_on_an_object_store(tmp_path: Path) -> None:
    import fsspec

    for url in (str(tmp_path / "out"), "memory://lock-test/out"):
        out = OutputDir(url)
        with output_lock(out) as me:
            assert me["pid"] == os.getpid()
            with pytest.raises(OutputLocked, match=f"pid {os.getpid()} on ") as caught, output_lock(OutputDir(url)):
                pass
            assert caught.value.holder is not None
            assert caught.value.holder["token"] == me["token"]
        with output_lock(OutputDir(url)):  # released
            pass
    # an object-store lock whose lease has run out (its holder stopped renewing it) is taken over
    stale = {"token": "0" * 32, "pid": 1, "host": "another-host", "since": "2026-01-01T00:00:00+00:00"}
    fs = fsspec.filesystem("memory")
    fs.pipe("/lock-test/out/_lock", json.dumps({**stale, "expires": time.time() - 1}).encode())
    with output_lock(OutputDir("memory://lock-test/out")) as me:
        assert json.loads(fs.cat("/lock-test/out/_lock"))["token"] == me["token"]
    # one whose lease still runs is not
    fs.pipe("/lock-test/out/_lock", json.dumps({**stale, "expires": time.time() + 60}).encode())
    with pytest.raises(OutputLocked, match="on another-host"), output_lock(OutputDir("memory://lock-test/out")):
        pass
    fs.rm("/lock-test", recursive=True)
