"""The signed audit head: every move signs the log's last record and channels.json with an ed25519 key kept outside
the registry; a log truncated, or rewritten whole with channels.json rewritten to match, is detected by
``ferry audit verify``, and the next promotion refuses to sign it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ferry.cli import app
from ferry.errors import AuditError, ConfigError
from ferry.registry import Registry
from ferry.registry.audit import dump_channels, make_record, parse_log, replay


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Registry, list[str], Path]:
    """A registry with three moves, each signed with a key made on first use under tmp_path/keys."""
    key = tmp_path / "keys" / "audit.pem"
    monkeypatch.setenv("FERRY_AUDIT_KEY_FILE", str(key))
    monkeypatch.delenv("FERRY_AUDIT_PUBLIC_KEY_FILE", raising=False)
    reg = Registry(str(tmp_path / "registry"), actor="tester", lock_timeout_s=10)
    ids = []
    for tag in ("a", "b"):
        run = tmp_path / f"run-{tag}"
        run.mkdir()
        (run / "model.onnx").write_bytes(f"onnx-{tag}".encode())
        ids.append(reg.register("churn", {"model.onnx": run / "model.onnx"}, {"gate": {"passed": True}}).id)
    reg.promote(ids[0], "online/champion", reason="first")
    reg.promote(ids[1], "online/champion", reason="second")
    reg.promote(ids[1], "edge/beta", reason="third", model="churn")
    return reg, ids, tmp_path / "registry" / "models" / "churn"


def verify(reg: Registry) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "verify", "--registry", reg.url], env={"COLUMNS": "300"})
    return result.exit_code, result.output


def test_every_move_signs_the_head_with_a_key_outside_the_registry(
    signed: tuple[Registry, list[str], Path], tmp_path: Path
) -> None:
    reg, _, model_dir = signed
    key = tmp_path / "keys" / "audit.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "audit.pem.pub").exists()
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in (tmp_path / "registry").rglob("*") if p.is_file())
    head = json.loads((model_dir / "audit.head.json").read_text())
    assert head["seq"] == 3
    assert head["hash"] == parse_log((model_dir / "audit.jsonl").read_text())[-1].hash
    code, out = verify(reg)
    assert code == 0, out
    assert "3 records, hash chain intact, signed head verified" in out


def test_a_truncated_log_with_channels_rewritten_to_match_is_detected(
    signed: tuple[Registry, list[str], Path],
) -> None:
    reg, ids, model_dir = signed
    records = parse_log((model_dir / "audit.jsonl").read_text())[:-1]
    (model_dir / "audit.jsonl").write_text("".join(r.to_line() for r in records))
    (model_dir / "channels.json").write_bytes(dump_channels(replay(records)))
    code, out = verify(reg)
    assert code == 1
    assert "BROKEN churn: the signed head names record 3" in out
    assert "the log was truncated or rewritten" in out
    with pytest.raises(AuditError, match="refusing to move 'edge/beta'"):  # the next move does not launder it
        reg.promote(ids[0], "edge/beta", reason="after the cut", model="churn")


def test_a_log_rewritten_whole_with_channels_to_match_is_detected(signed: tuple[Registry, list[str], Path]) -> None:
    reg, _, model_dir = signed
    original = parse_log((model_dir / "audit.jsonl").read_text())
    forged = []
    for rec in original:  # the same moves, by someone else, for other reasons: a chain that checks out
        forged.append(
            make_record(
                forged[-1] if forged else None,
                ts=rec.ts,
                actor="mallory",
                action=rec.action,
                model=rec.model,
                channel=rec.channel,
                from_version=rec.from_version,
                to_version=rec.to_version,
                reason="nothing to see",
                forced=rec.forced,
                gate=rec.gate,
            )
        )
    (model_dir / "audit.jsonl").write_text("".join(r.to_line() for r in forged))
    (model_dir / "channels.json").write_bytes(dump_channels(replay(forged)))
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("FERRY_AUDIT_KEY_FILE")  # without the key, the chain alone checks out
    try:
        assert verify(reg)[0] == 0
    finally:
        monkeypatch.undo()
    code, out = verify(reg)
    assert code == 1
    assert "the signed head names record 3" in out


def test_a_forged_removed_or_edited_head_is_detected(
    signed: tuple[Registry, list[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, _, model_dir = signed
    head_file = model_dir / "audit.head.json"
    good = head_file.read_bytes()
    head = json.loads(good)
    head["signed_at"] = "2020-01-01T00:00:00+00:00"
    head_file.write_text(json.dumps(head))
    assert "does not verify: the head was forged or edited" in verify(reg)[1]
    head_file.unlink()
    assert "no signed head" in verify(reg)[1]
    # an attacker's own key: a valid signature, by the wrong key
    monkeypatch.setenv("FERRY_AUDIT_KEY_FILE", str(tmp_path / "mallory" / "k.pem"))
    assert reg.sign_audit("churn").signed
    monkeypatch.setenv("FERRY_AUDIT_KEY_FILE", str(tmp_path / "keys" / "audit.pem"))
    code, out = verify(reg)
    assert code == 1
    assert "not by the audit key" in out
    # an auditor with only the public key
    head_file.write_bytes(good)
    monkeypatch.delenv("FERRY_AUDIT_KEY_FILE")
    monkeypatch.setenv("FERRY_AUDIT_PUBLIC_KEY_FILE", str(tmp_path / "keys" / "audit.pem.pub"))
    assert verify(reg)[0] == 0


def test_a_head_one_move_behind_is_repaired_by_the_next_move(signed: tuple[Registry, list[str], Path]) -> None:
    reg, ids, model_dir = signed
    records = parse_log((model_dir / "audit.jsonl").read_text())
    from ferry.registry.signing import load_private, make_head
    from ferry.settings import AuditSettings

    key = load_private(AuditSettings())
    assert key is not None
    channels_before = dump_channels(replay(records[:-1]))
    (model_dir / "audit.head.json").write_bytes(make_head("churn", records[-2], channels_before, key))
    report = reg.verify_audit("churn")
    assert not report.ok
    assert report.repairable
    assert "a move stopped before it signed" in report.problem
    reg.promote(ids[0], "edge/beta", reason="next", model="churn")
    assert reg.verify_audit("churn").signed


def test_no_key_a_key_inside_the_registry_or_not_ed25519_is_refused(
    signed: tuple[Registry, list[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, ids, _ = signed
    monkeypatch.delenv("FERRY_AUDIT_KEY_FILE")  # a writer without the key would leave the signed head behind
    with pytest.raises(AuditError, match="its audit log is signed"):
        reg.promote(ids[0], "edge/beta", reason="x", model="churn")
    monkeypatch.setenv("FERRY_AUDIT_KEY_FILE", str(tmp_path / "registry" / "audit.pem"))
    with pytest.raises(ConfigError, match="is inside the registry"):
        reg.promote(ids[0], "edge/beta", reason="x", model="churn")
    assert not (tmp_path / "registry" / "audit.pem").exists()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    monkeypatch.setenv("FERRY_AUDIT_KEY_FILE", str(bad))
    with pytest.raises(ConfigError, match="is not an unencrypted PEM private key"):
        reg.promote(ids[0], "edge/beta", reason="x", model="churn")


def test_an_erasure_is_a_signed_record_that_moves_nothing(signed: tuple[Registry, list[str], Path]) -> None:
    reg, _, model_dir = signed
    channels = reg.channels("churn")
    record = reg.record_erasure("churn", "ab" * 32, {"predictions": 2, "feedback": 1})
    assert (record.action, record.channel, record.to_version) == ("erase", "", "")
    assert record.reason == f"erasure of subject hmac-sha256:{'ab' * 32}: removed feedback 1, predictions 2"
    assert reg.channels("churn") == channels
    report = reg.verify_audit("churn")
    assert report.ok
    assert report.signed
    # an erasure record that claims to move a channel is not a legal record
    lines = (model_dir / "audit.jsonl").read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["channel"] = "online/champion"
    prev = parse_log("\n".join(lines[:-1]))[-1]
    rebuilt = make_record(
        prev, ts=forged["ts"], actor=forged["actor"], action="erase", model="churn", channel="online/champion",
        from_version=None, to_version="", reason=forged["reason"], forced=False, gate=record.gate,
    )  # fmt: skip
    (model_dir / "audit.jsonl").write_text("\n".join([*lines[:-1], rebuilt.to_line().rstrip()]) + "\n")
    bad = reg.verify_audit("churn")
    assert not bad.ok
    assert "an erasure moves nothing" in bad.problem
