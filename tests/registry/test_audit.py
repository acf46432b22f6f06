"""Channel moves and the hash-chained audit log: promote, rollback, refusals, concurrency, and tamper detection."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferry.errors import AuditError, ChannelError, PromotionRefused, RegistryError
from ferry.registry import ModelVersion, Registry

PASSED = {"metrics": {"roc_auc": 0.81}, "gate": {"passed": True}}
FAILED = {"metrics": {"roc_auc": 0.52}, "gate": {"passed": False}}


def make_version(reg: Registry, tmp_path: Path, tag: str, info: dict[str, object] = PASSED) -> ModelVersion:
    run = tmp_path / f"run-{tag}"
    run.mkdir()
    (run / "model.onnx").write_bytes(f"onnx-{tag}".encode())
    (run / "schema.json").write_text('{"columns": ["a"]}')
    (run / "gate.json").write_text(json.dumps({"passed": info.get("gate"), "tag": tag}))
    return reg.register("churn", {n: run / n for n in ("model.onnx", "schema.json", "gate.json")}, info)


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / "registry"), actor="tester", lock_timeout_s=10)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "registry" / "models" / "churn"


def spec_hash(obj: dict[str, object]) -> str:
    """The record hash exactly as the design states it, computed independently of the implementation."""
    body = {k: v for k, v in obj.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_promote_writes_a_complete_record_and_pointer(reg: Registry, tmp_path: Path, model_dir: Path) -> None:
    v = make_version(reg, tmp_path, "a")
    rec = reg.promote(v.id[:6], "online/champion", reason="first champion")

    assert (rec.seq, rec.action, rec.model, rec.channel) == (1, "promote", "churn", "online/champion")
    assert (rec.from_version, rec.to_version, rec.actor, rec.reason, rec.forced) == (
        None,
        v.id,
        "tester",
        "first champion",
        False,
    )
    assert rec.gate.passed is True
    assert rec.gate.report == f"models/churn/versions/{v.id}/gate.json"
    assert rec.gate.sha256 == hashlib.sha256((tmp_path / "registry" / rec.gate.report).read_bytes()).hexdigest()
    assert rec.prev_hash == "0" * 64

    line = json.loads((model_dir / "audit.jsonl").read_text())
    assert line == rec.to_dict()
    assert line["hash"] == spec_hash(line)
    channels = json.loads((model_dir / "channels.json").read_text())
    assert channels == {"online/champion": {"version": v.id, "history": [], "moved_at": rec.ts, "audit_head": rec.hash}}
    assert reg.channel("churn", "online/champion") == v.id
    assert reg.channel("churn", "edge/stable") is None
    assert reg.audit("churn") == [rec]


def test_history_promote_and_rollback(reg: Registry, tmp_path: Path) -> None:
    a, b, c = (make_version(reg, tmp_path, t) for t in "abc")
    for v in (a, b, c):
        reg.promote(v.id, "edge/stable", reason=f"ship {v.id}")
    reg.promote(a.id, "batch", reason="batch too")
    assert reg.channels("churn")["edge/stable"].history == (a.id, b.id)

    back = reg.rollback("edge/stable", model="churn", reason="c crashes on devices", actor="oncall")
    assert (back.action, back.from_version, back.to_version, back.actor) == ("rollback", c.id, b.id, "oncall")
    assert back.gate.report == f"models/churn/versions/{b.id}/gate.json"
    state = reg.channels("churn")["edge/stable"]
    assert (state.version, state.history, state.audit_head) == (b.id, (a.id,), back.hash)

    reg.rollback("edge/stable", model="churn")
    assert reg.channel("churn", "edge/stable") == a.id
    with pytest.raises(ChannelError, match="nothing to roll back to"):
        reg.rollback("edge/stable", model="churn")
    with pytest.raises(ChannelError, match="nothing to roll back to"):
        reg.rollback("online/champion", model="churn")
    assert reg.channel("churn", "batch") == a.id
    records = reg.audit("churn")
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r.prev_hash == p.hash for p, r in itertools.pairwise(records))
    assert reg.verify_audit("churn").ok


def test_failed_gate_is_refused_unless_forced(reg: Registry, tmp_path: Path) -> None:
    bad = make_version(reg, tmp_path, "bad", FAILED)
    unknown = make_version(reg, tmp_path, "unknown", {"metrics": {}})
    with pytest.raises(PromotionRefused, match="did not pass its gate"):
        reg.promote(bad.id, "online/challenger", reason="try it")
    with pytest.raises(PromotionRefused):
        reg.promote(unknown.id, "online/challenger", reason="try it")
    assert reg.audit("churn") == []

    rec = reg.promote(bad.id, "online/challenger", reason="shadow test despite gate", force=True)
    assert rec.forced is True
    assert rec.gate.passed is False
    rec2 = reg.promote(unknown.id, "online/challenger", reason="no verdict", force=True)
    assert rec2.forced is True
    assert rec2.gate.passed is None
    assert [r.forced for r in reg.audit("churn")] == [True, True]


def test_promoting_the_current_version_is_an_error(reg: Registry, tmp_path: Path) -> None:
    v = make_version(reg, tmp_path, "a")
    reg.promote(v.id, "batch", reason="first")
    with pytest.raises(ChannelError, match="already points to"):
        reg.promote(v.id, "batch", reason="again")
    assert len(reg.audit("churn")) == 1


@pytest.mark.parametrize("channel", ["", "Online", "online/", "/champion", "online/champion/x", "1batch", "a_b", "x\n"])
def test_bad_channel_names_are_refused(reg: Registry, tmp_path: Path, channel: str) -> None:
    v = make_version(reg, tmp_path, "a")
    with pytest.raises(ChannelError, match="channel name") as info:
        reg.promote(v.id, channel, reason="r")
    assert repr(channel) in str(info.value)
    assert "must match" in str(info.value)
    with pytest.raises(ChannelError):
        reg.rollback(channel, model="churn")


def test_reason_is_required(reg: Registry, tmp_path: Path) -> None:
    v = make_version(reg, tmp_path, "a")
    with pytest.raises(RegistryError, match="reason is empty"):
        reg.promote(v.id, "batch", reason="  ")


WORKER = """
import pathlib, sys, time
from ferry.registry import Registry
url, start, wid, a, b = sys.argv[1:]
reg = Registry(url, lock_timeout_s=60, actor=f"worker-{wid}")
pathlib.Path(f"{start}.ready-{wid}").touch()
while not pathlib.Path(start).exists():
    time.sleep(0.001)
for i in range(10):
    reg.promote((a, b)[i % 2], "online/champion", model="churn", reason=f"worker {wid} move {i}")
"""


def test_concurrent_promotions_from_processes_are_serialised(reg: Registry, tmp_path: Path, model_dir: Path) -> None:
    # Each worker alternates between two versions of its own, so no promotion is a no-op whatever the interleaving.
    pairs = [(make_version(reg, tmp_path, f"{w}a"), make_version(reg, tmp_path, f"{w}b")) for w in range(8)]
    start = tmp_path / "start"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, reg.url, str(start), str(w), a.id, b.id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w, (a, b) in enumerate(pairs)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("start.ready-*"))) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    start.touch()  # all workers are imported and waiting: release them together for maximum contention
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors

    report = reg.verify_audit("churn")
    assert report.ok, report
    assert report.n_records == 80
    records = reg.audit("churn")
    assert [r.seq for r in records] == list(range(1, 81))
    assert sorted(r.reason for r in records) == sorted(f"worker {w} move {i}" for w in range(8) for i in range(10))
    for w in range(8):  # each worker's own moves stay in order
        mine = [r.reason for r in records if r.actor == f"worker-{w}"]
        assert mine == [f"worker {w} move {i}" for i in range(10)]
    channels = json.loads((model_dir / "channels.json").read_text())
    champion = channels["online/champion"]
    assert champion["version"] == records[-1].to_version
    assert champion["audit_head"] == records[-1].hash
    assert champion["history"] == [r.from_version for r in records[1:]]
    assert len(champion["history"]) == 79
    assert not list(model_dir.glob(".*.tmp"))


# -- tampering -------------------------------------------------------------------------------------------------


@pytest.fixture
def history(reg: Registry, tmp_path: Path) -> list[ModelVersion]:
    """Six records: champion a -> b -> c, edge/beta a, champion rolled back to b, edge/beta b."""
    a, b, c = (make_version(reg, tmp_path, t) for t in "abc")
    for v in (a, b, c):
        reg.promote(v.id, "online/champion", reason=f"ship {v.id}")
    reg.promote(a.id, "edge/beta", reason="beta")
    reg.rollback("online/champion", model="churn", reason="c regressed")
    reg.promote(b.id, "edge/beta", reason="beta 2")
    assert reg.verify_audit("churn").ok
    return [a, b, c]


def read_lines(model_dir: Path) -> list[str]:
    return (model_dir / "audit.jsonl").read_text().splitlines(keepends=True)


def write_lines(model_dir: Path, lines: list[str]) -> None:
    (model_dir / "audit.jsonl").write_text("".join(lines))


def test_edited_field_in_a_middle_record_names_that_line(reg: Registry, model_dir: Path, history: object) -> None:
    lines = read_lines(model_dir)
    rec = json.loads(lines[2])
    rec["reason"] = "nothing to see here"
    lines[2] = json.dumps(rec) + "\n"
    write_lines(model_dir, lines)
    report = reg.verify_audit("churn")
    assert (report.ok, report.first_bad, report.n_records) == (False, 3, 6)
    assert "line 3" in report.problem
    assert "hash" in report.problem


def test_edited_record_with_recomputed_hash_breaks_the_next_link(
    reg: Registry, model_dir: Path, history: object
) -> None:
    lines = read_lines(model_dir)
    rec = json.loads(lines[2])
    rec["actor"] = "someone-else"
    rec["hash"] = spec_hash(rec)
    lines[2] = json.dumps(rec) + "\n"
    write_lines(model_dir, lines)
    report = reg.verify_audit("churn")
    assert report.first_bad == 4
    assert "prev_hash" in report.problem


def test_added_field_is_caught_by_the_hash(reg: Registry, model_dir: Path, history: object) -> None:
    lines = read_lines(model_dir)
    rec = json.loads(lines[1])
    rec["approved_by"] = "cfo"
    lines[1] = json.dumps(rec) + "\n"
    write_lines(model_dir, lines)
    assert reg.verify_audit("churn").first_bad == 2


def test_deleted_middle_line(reg: Registry, model_dir: Path, history: object) -> None:
    lines = read_lines(model_dir)
    write_lines(model_dir, lines[:3] + lines[4:])
    report = reg.verify_audit("churn")
    assert report.first_bad == 4
    assert "seq is 5, expected 4" in report.problem


def test_reordered_lines(reg: Registry, model_dir: Path, history: object) -> None:
    lines = read_lines(model_dir)
    lines[1], lines[2] = lines[2], lines[1]
    write_lines(model_dir, lines)
    report = reg.verify_audit("churn")
    assert report.first_bad == 2
    assert "seq" in report.problem


def test_truncated_tail_is_caught_by_the_channel_heads(reg: Registry, model_dir: Path, history: object) -> None:
    write_lines(model_dir, read_lines(model_dir)[:4])
    report = reg.verify_audit("churn")
    assert not report.ok
    assert report.first_bad is None
    assert report.n_records == 4
    assert report.channel is not None
    assert "not in the audit log" in report.problem
    assert not report.repairable


def test_whole_log_deleted(reg: Registry, model_dir: Path, history: object) -> None:
    (model_dir / "audit.jsonl").unlink()
    report = reg.verify_audit("churn")
    assert not report.ok
    assert report.n_records == 0
    assert "not in the audit log" in report.problem


def test_pointer_edited_by_hand(reg: Registry, model_dir: Path, history: list[ModelVersion]) -> None:
    channels = json.loads((model_dir / "channels.json").read_text())
    channels["online/champion"]["version"] = history[2].id
    (model_dir / "channels.json").write_text(json.dumps(channels))
    report = reg.verify_audit("churn")
    assert not report.ok
    assert report.first_bad is None
    assert report.channel == "online/champion"
    assert "edited outside the log" in report.problem
    assert "line 5" in report.problem


def test_history_edited_by_hand(reg: Registry, model_dir: Path, history: list[ModelVersion]) -> None:
    channels = json.loads((model_dir / "channels.json").read_text())
    channels["online/champion"]["history"] = []
    (model_dir / "channels.json").write_text(json.dumps(channels))
    report = reg.verify_audit("churn")
    assert not report.ok
    assert report.channel == "online/champion"
    assert "disagree" in report.problem


def test_channel_added_or_removed_by_hand(reg: Registry, model_dir: Path, history: list[ModelVersion]) -> None:
    original = (model_dir / "channels.json").read_text()
    channels = json.loads(original)
    channels["edge/stable"] = dict(channels["edge/beta"])
    (model_dir / "channels.json").write_text(json.dumps(channels))
    report = reg.verify_audit("churn")
    assert report.channel == "edge/stable"
    assert "no audit record ever moved it" in report.problem

    channels = json.loads(original)
    del channels["edge/beta"]
    (model_dir / "channels.json").write_text(json.dumps(channels))
    report = reg.verify_audit("churn")
    assert report.channel == "edge/beta"
    assert "missing from channels.json" in report.problem


def test_corrupt_json_line(reg: Registry, model_dir: Path, history: object) -> None:
    lines = read_lines(model_dir)
    lines[3] = lines[3][:40] + "\n"
    write_lines(model_dir, lines)
    report = reg.verify_audit("churn")
    assert report.first_bad == 4
    assert "not valid JSON" in report.problem
    with pytest.raises(AuditError, match="line 4"):
        reg.audit("churn")


def test_blank_and_foreign_lines(reg: Registry, model_dir: Path, history: object) -> None:
    lines = read_lines(model_dir)
    write_lines(model_dir, [*lines[:2], "\n", *lines[2:]])
    assert reg.verify_audit("churn").first_bad == 3
    rec = json.loads(lines[1])
    rec["model"] = "fraud"
    write_lines(model_dir, [lines[0], json.dumps(rec) + "\n", *lines[2:]])
    report = reg.verify_audit("churn")
    assert report.first_bad == 2
    assert "model 'fraud'" in report.problem
    write_lines(model_dir, [lines[0], '{"seq": 2}\n', *lines[2:]])
    report = reg.verify_audit("churn")
    assert report.first_bad == 2
    assert "missing field" in report.problem


def test_unreadable_channels_json(reg: Registry, model_dir: Path, history: object) -> None:
    (model_dir / "channels.json").write_text("{not json")
    report = reg.verify_audit("churn")
    assert not report.ok
    assert "channels.json is unreadable" in report.problem
    with pytest.raises(RegistryError, match="unreadable"):
        reg.channels("churn")


def test_moves_are_refused_while_the_log_is_broken(reg: Registry, model_dir: Path, history: list[ModelVersion]) -> None:
    lines = read_lines(model_dir)
    write_lines(model_dir, lines[:2] + lines[3:])
    with pytest.raises(AuditError, match="refusing to move"):
        reg.promote(history[2].id, "edge/beta", reason="should not happen")
    with pytest.raises(AuditError):
        reg.rollback("online/champion", model="churn")
    assert read_lines(model_dir) == lines[:2] + lines[3:]


def test_a_move_interrupted_between_its_two_writes_is_completed_by_the_next(
    reg: Registry, tmp_path: Path, model_dir: Path
) -> None:
    a, b, c = (make_version(reg, tmp_path, t) for t in "abc")
    reg.promote(a.id, "online/champion", reason="one")
    before = (model_dir / "channels.json").read_text()
    reg.promote(b.id, "online/champion", reason="two")
    (model_dir / "channels.json").write_text(before)  # as if the process died after writing the log

    report = reg.verify_audit("churn")
    assert not report.ok
    assert report.repairable
    assert "lags" in report.problem

    reg.promote(c.id, "online/champion", reason="three")
    assert reg.verify_audit("churn").ok
    state = reg.channels("churn")["online/champion"]
    assert (state.version, state.history) == (c.id, (a.id, b.id))


def test_empty_registry_verifies(reg: Registry) -> None:
    report = reg.verify_audit("churn")
    assert report.ok
    assert report.n_records == 0
    assert report.first_bad is None
    assert reg.audit("churn") == []
    assert reg.channels("churn") == {}
