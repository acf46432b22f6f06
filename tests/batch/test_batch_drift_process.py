"""The drift check in a process of its own: the same evidence as in the scoring process, a dying or failing check
that never costs the run its scores, and no process left behind however the run ends."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from batch_support import demo_partitions

from ferry import batch
from ferry.registry import Registry

psutil = pytest.importorskip("psutil")

# small record batches, so that scoring calls on_rows often enough to see the drift process
APART = batch.BatchSettings(drift_process_mb=0, batch_rows=200)  # always in a second process, however small the input
HERE = batch.BatchSettings(drift_process_mb=1_000_000, batch_rows=200)  # always in this process


def drift_processes() -> list[int]:
    """Processes this one started for drift checks, zombies (not reaped) included."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or "ferry.batch.drift_process" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


class Watch:
    """An ``on_rows`` callback that notes the drift processes alive while scoring runs, and can act on them."""

    def __init__(self, act: Any = None) -> None:
        self.seen: set[int] = set()
        self.act = act

    def __call__(self, n: int) -> None:
        alive = drift_processes()
        self.seen.update(alive)
        if self.act is not None and alive:
            self.act(alive)


@pytest.fixture
def registry(writable_champion: dict[str, str]) -> Registry:
    return Registry(writable_champion["registry"])


def _evidence(out: Path) -> dict[str, Any]:
    d = json.loads((out / "drift" / "summary.json").read_text())
    assert (out / "drift" / "report.html").stat().st_size > 10_000
    assert (out / "drift" / "report.evidently.json").exists()
    return {k: v for k, v in d.items() if k not in ("seconds", "report", "text")}


def test_the_drift_process_writes_the_same_evidence_as_the_scoring_process(tmp_path: Path, registry: Registry) -> None:
    source = str(demo_partitions(tmp_path / "in", drift=1.0))
    watch = Watch()
    apart = batch.score(source, str(tmp_path / "apart"), registry, settings=APART, on_rows=watch)
    here = batch.score(source, str(tmp_path / "here"), registry, settings=HERE)
    assert len(watch.seen) == 1  # one process, started before scoring ended
    assert drift_processes() == []
    assert apart.drift is not None
    assert here.drift is not None
    assert apart.drift["status"] == here.drift["status"] == "drifted"
    assert apart.drift["report"] == str(tmp_path / "apart" / "drift" / "report.html")
    a, h = _evidence(tmp_path / "apart"), _evidence(tmp_path / "here")
    assert json.loads((tmp_path / "apart" / "drift" / "summary.json").read_text())["text"] == apart.drift["text"]
    # each process hashes strings with its own seed, so Evidently may sum categories in another order
    for ca, ch in zip(a.pop("columns"), h.pop("columns"), strict=True):
        assert ca == {**ch, "score": pytest.approx(ch["score"], rel=1e-9)}
    assert a == h
    assert apart.scored == here.scored == 6000


def test_a_drift_process_killed_mid_run_fails_the_check_not_the_run(tmp_path: Path, registry: Registry) -> None:
    killed: list[int] = []

    def kill(pids: list[int]) -> None:
        if not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    summary = batch.score(
        str(demo_partitions(tmp_path / "in", drift=0.0)),
        str(tmp_path / "out"),
        registry,
        settings=APART,
        on_rows=Watch(kill),
    )
    assert killed
    assert drift_processes() == []
    assert summary.drift is not None
    assert summary.drift["status"] == "failed"
    assert "exit code -9 before it answered" in summary.drift["text"]
    assert "the scores are unaffected" in summary.drift["text"]
    assert json.loads((tmp_path / "out" / "drift" / "summary.json").read_text())["status"] == "failed"
    assert summary.scored == 6000
    assert not summary.failures
    assert sorted(p.name for p in (tmp_path / "out" / "scores").iterdir()) == ["part-0.parquet", "part-1.parquet"]
    assert sorted(p.name for p in (tmp_path / "out" / "_manifest").iterdir()) == ["part-0.json", "part-1.json"]
    again = batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry, settings=HERE)
    assert again.skipped == 2  # the manifest is whole: nothing is scored twice
    assert again.drift is not None
    assert again.drift["status"] == "no drift"


def test_a_check_that_raises_in_the_drift_process_is_reported(tmp_path: Path, registry: Registry) -> None:
    source = str(demo_partitions(tmp_path / "in", drift=0.0))
    batch.score(source, str(tmp_path / "out"), registry, settings=batch.BatchSettings(drift=False))
    for key in ("part-0", "part-1"):
        (tmp_path / "out" / "_drift" / f"{key}.parquet").write_bytes(b"not a Parquet file")
    summary = batch.score(source, str(tmp_path / "out"), registry, settings=APART)
    assert summary.skipped == 2
    assert summary.scored == 6000
    assert summary.drift is not None
    assert summary.drift["status"] == "failed"
    assert "ArrowInvalid" in summary.drift["text"]
    assert drift_processes() == []


def test_a_drift_process_that_hangs_fails_the_check_at_its_time_limit(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drift process stopped (SIGSTOP) mid-run never answers: the run waits only the check's time limit plus the
    grace, reports the check failed, keeps its scores, and still reaps the stopped process."""
    from ferry.batch import drift as batch_drift

    monkeypatch.setattr(batch_drift, "_ANSWER_GRACE_S", 2.0)
    stopped: list[int] = []

    def freeze(pids: list[int]) -> None:
        if not stopped:
            os.kill(pids[0], signal.SIGSTOP)
            stopped.append(pids[0])

    settings = APART.model_copy(update={"drift_timeout_s": 1.0})
    summary = batch.score(
        str(demo_partitions(tmp_path / "in", drift=0.0)),
        str(tmp_path / "out"),
        registry,
        settings=settings,
        on_rows=Watch(freeze),
    )
    assert stopped
    assert drift_processes() == []
    assert summary.drift is not None
    assert summary.drift["status"] == "failed"
    assert "did not answer within 3 s" in summary.drift["text"]
    assert summary.scored == 6000
    assert not summary.failures


def test_an_interrupted_run_leaves_no_drift_process(tmp_path: Path, registry: Registry) -> None:
    def interrupt(pids: list[int]) -> None:
        raise KeyboardInterrupt

    source = str(demo_partitions(tmp_path / "in", drift=0.0, parts=1))
    with pytest.raises(KeyboardInterrupt):
        batch.score(source, str(tmp_path / "out"), registry, settings=APART, on_rows=Watch(interrupt))
    assert drift_processes() == []
    assert not (tmp_path / "out" / "_manifest" / "part-0.json").exists()


def test_no_drift_process_without_drift_or_for_small_inputs(tmp_path: Path, registry: Registry) -> None:
    source = str(demo_partitions(tmp_path / "in", drift=0.0, parts=1))
    off, small = Watch(), Watch()
    summary = batch.score(
        source,
        str(tmp_path / "off"),
        registry,
        settings=batch.BatchSettings(drift=False, drift_process_mb=0),
        on_rows=off,
    )
    assert summary.drift is None
    summary = batch.score(source, str(tmp_path / "small"), registry, on_rows=small)  # default bound: some MB
    assert summary.drift is not None
    assert summary.drift["status"] == "no drift"
    assert off.seen == small.seen == set()


def test_a_script_without_a_main_guard_runs_once_and_gets_its_drift_check(tmp_path: Path, registry: Registry) -> None:
    import subprocess
    import sys

    source = demo_partitions(tmp_path / "in", drift=0.0, parts=1)
    script = tmp_path / "score.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from ferry import batch\n"
        "from ferry.registry import Registry\n"
        "with Path(sys.argv[1], 'runs.txt').open('a') as fh:\n"
        "    fh.write('ran\\n')\n"
        "s = batch.score(sys.argv[2], sys.argv[3], Registry(sys.argv[4]), "
        "settings=batch.BatchSettings(drift_process_mb=0))\n"
        "print(s.drift['status'])\n"
    )
    args = [str(tmp_path), str(source), str(tmp_path / "out"), registry.url]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "no drift"
    assert (tmp_path / "runs.txt").read_text() == "ran\n"  # the drift process did not run the script again


def _wait_for(path: Path, timeout_s: float = 120.0) -> None:
    import time

    started = time.monotonic()
    while not path.exists():
        assert time.monotonic() - started < timeout_s, f"{path} did not appear within {timeout_s:.0f} s"
        time.sleep(0.1)


def test_the_drift_process_checks_while_partitions_score(tmp_path: Path, registry: Registry) -> None:
    """The check is done before scoring ends (scoring waits here, at its first record batch, for the check's
    summary to appear), and the run's answer is that check: it is not made again."""
    source = demo_partitions(tmp_path / "in", drift=1.0)
    out = tmp_path / "out"
    early: list[dict[str, Any]] = []

    def wait_for_the_check(pids: list[int]) -> None:
        if not early:
            _wait_for(out / "drift" / "summary.json")
            early.append(json.loads((out / "drift" / "summary.json").read_text()))

    summary = batch.score(str(source), str(out), registry, settings=APART, on_rows=Watch(wait_for_the_check))
    assert early
    assert early[0]["status"] == "drifted"
    # both partitions' samples, drawn from the input before they scored
    assert early[0]["sample_rows"] == 2 * APART.drift_sample_rows
    assert summary.drift is not None
    waited = summary.drift.pop("waited_seconds")  # the run's own note: how long it waited for the answer
    assert 0.0 <= waited <= summary.seconds  # part of the run's own time, measured on the same clock
    assert summary.drift == early[0] == json.loads((out / "drift" / "summary.json").read_text())
    assert sorted(p.name for p in (out / "_drift").iterdir()) == ["part-0.parquet", "part-1.parquet"]
    assert drift_processes() == []
    # the sample is kept for the monitor flow once, when the run ended, not by the early check alone
    inputs = Path(registry.url) / "models" / "churn" / "batch" / "inputs"
    runs = [pq.read_table(f, columns=["run"]).column("run").to_pylist() for f in sorted(inputs.glob("*.parquet"))]
    assert [len(r) for r in runs if set(r) == {str(out)}] == [4000]


def test_a_partition_that_fails_after_its_sample_was_checked_is_left_out_of_the_answer(
    tmp_path: Path, registry: Registry
) -> None:
    """The early check covered both partitions; the second then fails to score (its file was corrupted after the
    drift process sampled it), so the drift process checks again on the first partition's sample alone."""
    source = demo_partitions(tmp_path / "in", drift=0.0)
    out = tmp_path / "out"

    def corrupt_the_second(pids: list[int]) -> None:
        if not (out / "drift" / "summary.json").exists():
            _wait_for(out / "drift" / "summary.json")
            (source / "part-1.parquet").write_bytes(b"PAR1 not really")

    with pytest.raises(batch.PartitionsFailed) as failed:
        batch.score(str(source), str(out), registry, settings=APART, on_rows=Watch(corrupt_the_second))
    summary = failed.value.summary
    assert summary is not None
    assert list(summary.failures) == ["part-1"]
    assert summary.drift is not None
    assert summary.drift["status"] == "no drift"
    assert summary.drift["sample_rows"] == APART.drift_sample_rows  # part-0's sample only
    assert json.loads((out / "drift" / "summary.json").read_text())["sample_rows"] == APART.drift_sample_rows
    assert drift_processes() == []
