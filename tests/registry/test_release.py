"""A release moves several channels under one lock as one audit record, all or nothing, and is rolled back the same
way; a process killed at any step of a release (lock, bundle, audit record, pointers, signed head, TUF) leaves every
channel where it was, or every channel moved, and running the release again finishes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import clone_version, copy_clean, write_artifacts

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
    assert reg.audit("churn") == [first.record]  # one record for the whole release
    assert (first.record.action, first.record.reason) == ("release", f"release {first.id}: first")
    assert first.record.channel == ",".join(CHANNELS)
    moves = [(m.channel, m.from_version, m.to_version) for m in first.record.changes]
    assert moves == [(c, None, one) for c in CHANNELS]

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
    assert found == second
    n = len(reg.audit("churn"))
    undone = rollback_release(reg, "churn", reason="bad release")
    assert len(reg.audit("churn")) == n + 1  # the rollback is one record too
    assert (undone.id, undone.record.action, undone.record.to_version) == (second.id, "release-rollback", one)
    moves = [(m.channel, m.from_version, m.to_version) for m in undone.record.changes]
    assert moves == [(c, two, one) for c in CHANNELS]
    assert {reg.channel("churn", c) for c in CHANNELS} == {one}
    assert [reg.channels("churn")[c].history for c in CHANNELS] == [(), (), ()]
    with pytest.raises(ChannelError, match="already rolled back"):
        rollback_release(reg, "churn", reason="again")
    assert reg.verify_audit("churn").ok

    third = release(reg, two, CHANNELS, reason="third")
    reg.rollback("edge/stable", model="churn", reason="edge alone")
    with pytest.raises(ChannelError, match=f"release {third.id}: channel 'edge/stable' moved since"):
        rollback_release(reg, "churn", reason="too late")
    assert reg.channel("churn", "online/champion") == two
    assert reg.verify_audit("churn").ok


def test_a_release_record_that_lies_about_its_moves_breaks_the_chain(tmp_path: Path) -> None:
    reg = Registry(str(tmp_path / "registry"), actor="tester")
    one = reg.register("churn", write_artifacts(tmp_path / "1", "1"), PASSED).id
    two = reg.register("churn", write_artifacts(tmp_path / "2", "2"), PASSED).id
    release(reg, one, CHANNELS, reason="first")
    release(reg, two, CHANNELS[:2], reason="second")
    root = tmp_path / "registry" / "models" / "churn"
    log, pointers = (root / "audit.jsonl").read_text(), (root / "channels.json").read_text()
    lines = log.splitlines()
    for problem, edit in [
        ("line 2: field 'channel' must name each channel", lambda r: {**r, "channel": "online/champion"}),
        ("line 2: field 'moves' of a release record must be a non-empty list", lambda r: {**r, "moves": []}),
        ("line 2: field 'moves' belongs to release records only", lambda r: {**r, "action": "promote"}),
        ("line 2: hash does not match", lambda r: {**r, "reason": "edited"}),
    ]:
        edited = "\n".join([lines[0], json.dumps(edit(json.loads(lines[1])))]) + "\n"
        _, report = check_log(edited, pointers, model="churn")
        assert problem in report.problem, report


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


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from ferry import storage
    from ferry.cli import app
    from ferry.publish import bundle, tufrepo

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def after(fn, when):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            if when(*args):
                die()
            return out
        return wrapped

    lock, write = storage.lock, storage.atomic_write_bytes
    kill_at = {"audit": "audit.jsonl", "channels": "channels.json", "head": "audit.head.json"}
    version, channels, steps = sys.argv[1], sys.argv[2], sys.argv[3:]
    for step in steps:  # one child process per step, each on its own copy of the registry and the TUF repository
        pid = os.fork()
        if pid == 0:
            base = os.environ["KILL_BASE"] + "/" + step
            os.environ.update(FERRY_REGISTRY_URL=base + "/registry", FERRY_EDGE_REPO_URL=base + "/repo")
            if step == "lock":
                class Locked:
                    def __init__(self, *args, **kwargs):
                        self.inner = lock(*args, **kwargs)
                    def __enter__(self):
                        self.inner.__enter__()
                        die()
                    def __exit__(self, *exc):
                        return self.inner.__exit__(*exc)
                storage.lock = Locked
            elif step == "bundle":
                bundle.build_bundle = after(bundle.build_bundle, lambda *a: True)
            elif step in kill_at:
                storage.atomic_write_bytes = after(write, lambda fs, path, *a: path.endswith("/" + kill_at[step]))
            elif step == "tuf":
                tufrepo.TufRepository.publish = after(tufrepo.TufRepository.publish, lambda *a: True)
            app(["release", version, "--to", channels, "--reason", "killed at " + step], standalone_mode=False)
            os._exit(3)  # not killed: the step was never reached
        _, status = os.waitpid(pid, 0)
        print(step, os.waitstatus_to_exitcode(status), flush=True)
    """
)
STEPS = ["lock", "bundle", "audit", "channels", "head", "tuf"]
TOGETHER = ["online/champion", "edge/stable"]
TARGET = "churn/edge-stable/bundle.tar"


@pytest.mark.slow
@pytest.mark.integration  # six real processes killed, a bundle built and published in each: ~10 s
def test_a_release_killed_at_each_step_leaves_every_channel_where_it_was_and_running_it_again_finishes_it(
    churn_champion: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry.publish import describe, open_repository, release_and_publish

    monkeypatch.setenv("FERRY_EDGE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("FERRY_AUDIT_KEY_FILE", str(tmp_path / "audit-key" / "audit.pem"))
    monkeypatch.setenv("FERRY_ACTOR", "tester@ferry")
    base = tmp_path / "base"
    reg = copy_clean(churn_champion["registry"], base / "registry")
    old = churn_champion["version"]
    new = clone_version(reg, reg.get(old), tmp_path / "clone", note="the release")
    monkeypatch.setenv("FERRY_EDGE_REPO_URL", str(base / "repo"))
    reg.sign_audit("churn")  # the champion's log was written unsigned
    release_and_publish(reg, old, ["edge/stable"], reason="devices run the champion")
    for step in STEPS:
        shutil.copytree(base, tmp_path / "kill" / step)
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, new, ",".join(TOGETHER), *STEPS],
        env={**os.environ, "KILL_BASE": str(tmp_path / "kill")},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [w for step in STEPS for w in (step, "-9")], proc.stdout + proc.stderr
    before = {name: (base / "registry/models/churn" / name).read_bytes() for name in ("audit.jsonl", "channels.json")}
    for i, step in enumerate(STEPS):
        here = tmp_path / "kill" / step
        monkeypatch.setenv("FERRY_EDGE_REPO_URL", str(here / "repo"))
        files = here / "registry/models/churn"
        records, report = check_log(
            (files / "audit.jsonl").read_text(), (files / "channels.json").read_text(), model="churn"
        )
        assert report.ok or report.repairable, (step, report)
        logged = {replay(records)[c].version for c in TOGETHER}
        pointed = {json.loads((files / "channels.json").read_text())[c]["version"] for c in TOGETHER}
        published = describe(open_repository())["targets"][TARGET]["version"]
        committed = i >= STEPS.index("audit")  # the release's record is in the log from this step on
        assert logged == {new if committed else old}, step
        assert pointed == {new if i >= STEPS.index("channels") else old}, step
        assert published == (new if step == "tuf" else old), step
        if not committed:
            assert {n: (files / n).read_bytes() for n in before} == before, step
        here_reg = Registry(str(here / "registry"))
        done, _ = release_and_publish(here_reg, new, TOGETHER, reason="again")
        assert [r.action for r in here_reg.audit("churn")].count("release") == 2, step  # never twice
        assert done.record == here_reg.audit("churn")[-1]
        assert {here_reg.channel("churn", c) for c in TOGETHER} == {new}, step
        assert describe(open_repository())["targets"][TARGET]["version"] == new, step
        assert here_reg.verify_audit("churn").signed, step
