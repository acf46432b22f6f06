"""``ferry score`` end to end, and a real crash: SIGKILL in the middle of a run, then a rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from batch_support import read_scores, without_time, write_partitions
from typer.testing import CliRunner

from ferry import batch
from ferry.cli import app
from ferry.registry import Registry


def test_score_command(tmp_path: Path, writable_champion: dict[str, str]) -> None:
    write_partitions(writable_champion, tmp_path / "in", n=2, csv=1)
    runner = CliRunner()
    args = ["score", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    args += ["--registry", writable_champion["registry"]]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert writable_champion["version"] in result.output
    assert "6,000 (6,000 scored, 0 rejected)" in result.output
    assert len(read_scores(tmp_path / "out")) == 6000

    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "3 (3 finished earlier, 0 failed)" in again.output

    pinned = runner.invoke(app, [*args, "--version", "0000ffff"], env={"COLUMNS": "200"})
    assert pinned.exit_code == 2
    assert "no version '0000ffff'" in pinned.output

    (tmp_path / "in" / "day=07").mkdir()
    (tmp_path / "in" / "day=07" / "broken.parquet").write_bytes(b"PAR1 not really")
    broken = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert broken.exit_code == 2
    assert "day=07__broken" in broken.output
    assert "corrupt or truncated" in broken.output
    assert "1 partition(s) failed" in broken.output


def test_score_command_explains(
    tmp_path: Path, writable_champion: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRY_BATCH_DRIFT", "false")  # the explanations are under test here
    (tmp_path / "in").mkdir()
    pq.write_table(pq.read_table(writable_champion["data"]).slice(0, 12), tmp_path / "in" / "a.parquet")
    runner = CliRunner()
    args = ["score", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    args += ["--registry", writable_champion["registry"], "--explain"]
    too_many = runner.invoke(app, [*args, "--top-k", "99"], env={"COLUMNS": "400"})
    assert too_many.exit_code == 2
    assert too_many.output.strip().splitlines() == [
        "error: --top-k (top_k) must be a whole number from 1 to 15, the features of model 'churn', got 99"
    ]
    assert not (tmp_path / "out" / "scores").exists()
    wrong = runner.invoke(app, args, env={"COLUMNS": "400", "FERRY_EXPLAIN_TOP_K": "0"})
    assert wrong.exit_code == 2
    assert len(wrong.output.strip().splitlines()) == 1
    assert "FERRY_EXPLAIN_TOP_K" in wrong.output
    assert not (tmp_path / "out" / "scores").exists()

    done = runner.invoke(app, [*args, "--top-k", "3"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "explanations: with explanations (top 3, the predicted class)" in done.output
    got = read_scores(tmp_path / "out")
    assert len(got) == 12
    assert [c for c in got.columns if c.startswith("top_")] == ["top_1", "top_2", "top_3"]
    assert got[[c for c in got.columns if c.startswith("attribution_")]].notna().all().all()


KILLABLE = "from ferry.cli import app; app()"


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_output(
    tmp_path: Path, writable_champion: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the output's resumption is under test; a killed run's drift samples are test_batch_drift.py's
    monkeypatch.setenv("FERRY_BATCH_DRIFT", "false")
    table = pq.read_table(writable_champion["data"])
    (tmp_path / "in").mkdir()
    n_parts = 24
    step = table.num_rows // n_parts
    for i in range(n_parts):
        pq.write_table(table.slice(i * step, step), tmp_path / "in" / f"p{i:02d}.parquet")
    out = tmp_path / "out"
    env = {**os.environ, "FERRY_BATCH_BATCH_ROWS": "20", "FERRY_REGISTRY_URL": writable_champion["registry"]}
    cmd = [sys.executable, "-c", KILLABLE, "score", "--input", str(tmp_path / "in"), "--output", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / "_manifest"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.exists() and len(list(manifest.glob("*.json"))) >= 3:
                break
            time.sleep(0.005)
        assert proc.poll() is None, (
            f"the run ended before it could be killed: {proc.stderr.read() if proc.stderr else ''}"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.stderr is not None:
        proc.stderr.close()
    finished_before = len(list(manifest.glob("*.json")))
    assert 3 <= finished_before < n_parts, "the kill must land in the middle of the run"

    registry = Registry(writable_champion["registry"])
    resumed = batch.score(str(tmp_path / "in"), str(out), registry)
    assert resumed.skipped == finished_before
    clean = batch.score(str(tmp_path / "in"), str(tmp_path / "clean"), registry)
    assert clean.skipped == 0

    got, want = read_scores(out), read_scores(tmp_path / "clean")
    assert len(got) == len(want) == n_parts * step
    assert got["customer_id"].is_unique
    pd.testing.assert_frame_equal(without_time(got), without_time(want))
    assert sorted(p.name for p in (out / "scores").iterdir()) == sorted(
        p.name for p in (tmp_path / "clean" / "scores").iterdir()
    )
    assert list((out / "_tmp").iterdir()) == []
