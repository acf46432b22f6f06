"""Retention: each kind of kept data goes once it is older than its retention, and not before; versions, channels
and the audit log are never touched; a dry run removes nothing; the same on an object store; the housekeeping flow
runs it. The data is written by the real writers (online logs, batch records, monitor reports and history) and aged
by sweeping at a later ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pytest
from helpers import copy_registry, traffic
from typer.testing import CliRunner

from ferry import demo_data, storage
from ferry.cli import app
from ferry.governance import RetentionSettings, sweep, sweep_runs
from ferry.monitor.sources import feedback_since, record_batch_input
from ferry.monitor.state import append_history, history, keep_report
from ferry.registry import Registry, layout
from ferry.status import note_batch_run
from ferry.train import steps

NOW = datetime.now(UTC)


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def kept(churn_champion: dict[str, str], tmp_path: Path) -> Registry:
    """A registry with a day of everything the sweep looks after, written as ferry writes it."""
    registry = copy_registry(churn_champion, tmp_path / "registry")
    version = churn_champion["version"]
    traffic(registry, "online/champion", 50, seed=3, labels="right")  # predictions and feedback
    record_batch_input(registry, "churn", demo_data.make_churn(20, seed=4), version=version, run="r1")
    note_batch_run(registry, "churn", output=str(tmp_path / "out"), version=version, rows=20, scored=20)
    report = tmp_path / f"{NOW:%Y%m%dT%H%M%S}-online.html"
    report.write_text("<html>drift report</html>")
    keep_report(registry, "churn", report)
    old = (NOW - timedelta(days=400)).isoformat(timespec="seconds")
    append_history(registry, "churn", [{"at": old, "source": "online"}, {"at": NOW.isoformat(), "source": "online"}])
    fs, root = storage.open_fs(registry.url)
    quarantined = f"{layout.online_dir(root, 'churn', 'quarantine')}/predictions/{NOW:%Y-%m-%d}/x.jsonl"
    storage.atomic_write_bytes(fs, quarantined, b'{"reason": "test"}\n')
    return registry


def test_each_kind_goes_after_its_retention_and_not_before(kept: Registry, churn_champion: dict[str, str]) -> None:
    root = Path(kept.url)
    before = files(root)
    channels = kept.channels("churn")

    soon = sweep(kept.url, now=NOW + timedelta(days=1))
    assert soon.counts() == {"monitor_history": 1}  # only the judgement from 400 days ago
    assert [h["at"] for h in history(kept, "churn")] == [NOW.isoformat()]

    later = sweep(kept.url, now=NOW + timedelta(days=100))
    assert later.counts() == {
        "predictions": 1,  # one day folder
        "quarantine": 1,
        "batch_inputs": 1,
    }
    after = files(root)
    gone = before - after
    swept = ("online/predictions/", "online/quarantine/", "batch/inputs/", "monitor/history")
    assert gone
    assert all(name.startswith(tuple(f"models/churn/{s}" for s in swept)) for name in gone), gone
    # kept: feedback (365 days), batch run records, reports (180 days), versions, channels, audit
    labels, _ = feedback_since(kept, "churn", None)
    assert labels is not None
    assert len(labels) == 50
    assert any(n.startswith("models/churn/batch/runs/") for n in after)
    assert kept.channels("churn") == channels
    assert kept.verify_audit("churn").ok
    assert kept.verify_version(kept.get(churn_champion["version"])) == []

    short = RetentionSettings(feedback=30, batch_runs=30, monitor_reports=30)
    last = sweep(kept.url, short, now=NOW + timedelta(days=100))
    assert last.counts() == {"feedback": 1, "batch_runs": 1, "monitor_reports": 1}
    assert feedback_since(kept, "churn", None)[0] is None


def test_a_dry_run_lists_and_removes_nothing(kept: Registry) -> None:
    before = files(Path(kept.url))
    dry = sweep(kept.url, now=NOW + timedelta(days=400), dry_run=True)
    assert set(dry.counts()) == {
        "predictions", "feedback", "telemetry", "quarantine", "batch_inputs", "batch_runs", "monitor_reports",
        "monitor_history",
    } - {"telemetry"}  # fmt: skip
    assert all(size > 0 for size in dry.bytes.values())
    assert files(Path(kept.url)) == before
    # the command sweeps as of now: age the feedback log's day folder as if it were written in 2020
    feedback = Path(kept.url) / "models" / "churn" / "online" / "feedback"
    [today] = list(feedback.iterdir())
    today.rename(feedback / "2020-01-01")
    before = files(Path(kept.url))
    args = ["housekeeping", "--dry-run", "--registry", kept.url]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "would remove" in result.output
    [row] = [line for line in result.output.splitlines() if "feedback" in line]
    assert "365 days" in row
    assert files(Path(kept.url)) == before


def test_the_same_on_an_object_store(kept: Registry) -> None:
    local = sweep(kept.url, now=NOW + timedelta(days=100), dry_run=True)
    memory = fsspec.filesystem("memory")
    memory.put(kept.url, "/retention-test/registry", recursive=True)
    try:
        url = "memory://retention-test/registry"
        swept = sweep(url, now=NOW + timedelta(days=100))
        assert swept.counts() == local.counts()
        assert not any("/online/predictions/" in p for p in memory.find("/retention-test"))
        assert Registry(url).verify_audit("churn").ok
    finally:
        memory.rm("/retention-test", recursive=True)


def test_run_directories_go_after_their_retention(tmp_path: Path) -> None:
    work = tmp_path / "runs"
    runs = [steps.new_run_dir(work) for _ in range(2)]
    (runs[0] / "data.parquet").write_bytes(b"x" * 100)
    (work / "notes").mkdir()  # not a run: no date in its name
    assert sweep_runs(work, now=NOW + timedelta(days=29)).counts() == {}
    swept = sweep_runs(work, now=NOW + timedelta(days=31))
    assert swept.counts() == {"runs": 2}
    assert swept.bytes["runs"] >= 100
    assert sorted(p.name for p in work.iterdir()) == ["notes"]


@pytest.mark.integration
def test_the_housekeeping_flow_sweeps_every_model_and_the_work_dir(
    kept: Registry, tmp_path: Path, prefect_server: None
) -> None:
    from ferry_flows.housekeeping import housekeeping

    # aged as if written in 2020: the day folder of the prediction log and a run directory
    predictions = Path(kept.url) / "models" / "churn" / "online" / "predictions"
    [today] = list(predictions.iterdir())
    today.rename(predictions / "2020-01-01")
    work = tmp_path / "runs"
    steps.new_run_dir(work).rename(work / "20200101T000000Z-0000aaaa")
    steps.new_run_dir(work)  # today's stays

    result = housekeeping(registry_url=kept.url, work_dir=str(work))
    assert result["churn"]["counts"] == {"predictions": 1, "monitor_history": 1}
    assert result["(run directories)"]["counts"] == {"runs": 1}
    assert [p.name for p in work.iterdir()] != ["20200101T000000Z-0000aaaa"]
    assert len(list(work.iterdir())) == 1
    assert list(predictions.iterdir()) == []
