"""A release moves several channels under one lock, all or nothing, and is rolled back the same way; a process
killed at any step of a release leaves every channel of it on the same version."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import write_artifacts

from ferry.errors import ChannelError
from ferry.registry import Registry
from ferry.registry.audit import check_log, replay
from ferry.registry.release import last_release, parse_channels, release, rollback_release

PASSED = {"gate": {"passed": True}}
CHANNELS = ["online/champion", "edge/stable", "batch"]


def test_a_release_moves_every_channel_or_none(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "registry"), actor="tester")
    one = reg.register("churn", write_artifacts(tmp_path / "1", "1"), PASSED).id
    two = reg.register("churn", write_artifacts(tmp_path / "2", "2"), PASSED).id
    first = release(reg, one, CHANNELS, reason="first")
    assert first.channels == CHANNELS
    assert {reg.channel("churn", c) for c in CHANNELS} == {one}
    assert {r.reason for r in first.records} == {f"release {first.id}: first"}

    # one refused move refuses the release: nothing is written
    reg.promote(two, "batch", reason="batch alone")
    before = reg.audit("churn")
    with pytest.raises(ChannelError, match="'batch' of 'churn' already points to"):
        release(reg, two, CHANNELS, reason="second")
    assert reg.audit("churn") == before
    assert reg.channel("churn", "online/champion") == one
    reg.rollback("batch", model="churn", reason="batch back")

    second = release(reg, two, CHANNELS, reason="second")
    found = last_release(reg, "churn")
    assert found is not None
    assert found.id == second.id
    assert [r.seq for r in found.records] == [r.seq for r in second.records]
    undone = rollback_release(reg, "churn", reason="bad release")
    assert [r.action for r in undone.records] == ["rollback"] * 3
    assert {reg.channel("churn", c) for c in CHANNELS} == {one}
    with pytest.raises(ChannelError, match="already rolled back"):
        rollback_release(reg, "churn", reason="again")
    assert reg.verify_audit("churn").ok

    third = release(reg, two, CHANNELS, reason="third")
    reg.rollback("edge/stable", model="churn", reason="edge alone")
    with pytest.raises(ChannelError, match=f"'edge/stable' moved since release {third.id}"):
        rollback_release(reg, "churn", reason="too late")
    assert reg.channel("churn", "online/champion") == two


def test_bad_release_input_is_refused_clearly(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "registry"), actor="tester")
    v = reg.register("churn", write_artifacts(tmp_path / "1", "1"), PASSED).id
    with pytest.raises(ChannelError, match="each once"):
        parse_channels("online/champion,online/champion")
    with pytest.raises(ChannelError, match="name one or more"):
        parse_channels(" , ")
    with pytest.raises(ChannelError, match="channel name 'Online' is invalid"):
        release(reg, v, ["edge/stable", "Online"], reason="bad")
    with pytest.raises(ChannelError, match="no release to roll back"):
        rollback_release(reg, "churn", reason="none")
    assert reg.audit("churn") == []


RELEASER = textwrap.dedent(
    """
    import sys
    from ferry.registry import Registry
    from ferry.registry.release import release
    reg = Registry(sys.argv[1])
    versions = sys.argv[2].split(",")
    channels = ["online/champion", "edge/stable", "batch"]
    i = 0
    while True:
        now = reg.channel("churn", "online/champion")
        release(reg, versions[1] if now == versions[0] else versions[0], channels, reason=f"release {i}")
        print("released", i, flush=True)
        i += 1
    """
)


@pytest.mark.slow
def test_a_release_killed_at_any_step_leaves_its_channels_together(tmp_path: Path) -> None:
    url = str(tmp_path / "registry")
    reg = Registry(url, actor="tester")
    versions = [reg.register("churn", write_artifacts(tmp_path / t, t), PASSED).id for t in ("1", "2")]
    rng = random.Random(7)
    for attempt in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", RELEASER, url, ",".join(versions)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            for _ in range(1 + attempt):
                assert proc.stdout.readline().startswith("released")
            # a varying number of further releases: the kill lands in the lock, the log write, the pointer write
            for _ in range(rng.randrange(0, 40)):
                proc.stdout.readline()
        finally:
            proc.kill()
            _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err
        root = tmp_path / "registry" / "models" / "churn"
        log = (root / "audit.jsonl").read_text()
        pointers = (root / "channels.json").read_text()
        records, report = check_log(log, pointers, model="churn")
        assert report.ok or report.repairable, report
        assert len({replay(records)[c].version for c in CHANNELS}) == 1
        assert len({json.loads(pointers)[c]["version"] for c in CHANNELS}) == 1
    release(reg, versions[0], ["edge/beta"], reason="the next move completes one the kill stopped half-way")
    assert reg.verify_audit("churn").ok
