"""The encryption layer on its own: an envelope reads back only with its key; a wrong key, a truncated, garbled or
changed object, a key file of the wrong length and a missing key are each one clear error naming the object or
the file, never wrong data; plaintext objects read as before; ``ferry keys rotate`` re-encrypts resumably, even when
killed halfway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sealed_support import new_key_file
from typer.testing import CliRunner

from ferry import storage
from ferry.cli import app
from ferry.errors import EncryptionKeyError, SealedObjectError
from ferry.online.wal import WriteAheadLog
from ferry.storage import sealed
from ferry.train.summary import report_note

ROW = b'{"customer_id": "cust-1234567890", "total_charges": 4821.37}'


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = new_key_file(tmp_path / "data.key")
    monkeypatch.setenv("FERRY_ENCRYPTION_KEY_FILE", str(path))
    return path


def test_an_object_reads_back_only_through_its_key_and_plaintext_passes(key: Path, tmp_path: Path) -> None:
    fs = storage.local_fs()
    storage.atomic_write_sealed(fs, str(tmp_path / "obj"), ROW)
    raw = (tmp_path / "obj").read_bytes()
    assert raw.startswith(sealed.MAGIC)
    assert b"cust-" not in raw
    assert b"4821" not in raw
    assert sealed.key_id_of(raw) == sealed.load_ring(key).current_id
    assert storage.read_bytes(fs, str(tmp_path / "obj")) == ROW
    assert storage.read_raw(fs, str(tmp_path / "obj")) == raw
    (tmp_path / "clear").write_bytes(ROW)
    assert storage.read_bytes(fs, str(tmp_path / "clear")) == ROW  # written before the key: read as it is
    assert sealed.seal(b"model", model=True) == b"model"  # model artifacts only with FERRY_ENCRYPTION_MODELS
    (note,) = report_note("reg/gate.html")  # a report's link says how to open it
    assert "ferry keys decrypt reg/gate.html -o" in note


def test_without_a_key_nothing_is_sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_ENCRYPTION_KEY_FILE", raising=False)
    assert sealed.seal(ROW) == ROW
    assert report_note("reg/gate.html") == []


def test_models_are_sealed_when_asked(key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_ENCRYPTION_MODELS", "true")
    assert sealed.is_sealed(sealed.seal(b"model", model=True))
    monkeypatch.setenv("FERRY_ENCRYPTION_MODELS", "perhaps")
    with pytest.raises(EncryptionKeyError, match="FERRY_ENCRYPTION_MODELS='perhaps'"):
        sealed.seal(b"model", model=True)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: d[:60], "truncated"),
        (lambda d: d[:-1], "fails authentication"),
        (lambda d: _flip(d, len(d) - 20), "fails authentication"),  # the body
        (lambda d: _flip(d, 40), "fails authentication"),  # the wrapped data key
        (lambda d: _flip(d, 8), "format version"),
        (lambda d: _flip(d, 12), "which .* does not hold"),  # the key id
        (lambda d: d + b"garbage", "fails authentication"),
    ],
    ids=["truncated-header", "truncated-tag", "body", "wrapped-key", "version", "key-id", "appended"],
)
def test_a_damaged_object_is_named_never_read(key: Path, tmp_path: Path, damage: object, reason: str) -> None:
    path = tmp_path / "obj.parquet"
    path.write_bytes(damage(sealed.seal(ROW)))  # type: ignore[operator]
    with pytest.raises(SealedObjectError, match=rf"^{path}: .*{reason}"):
        storage.read_bytes(storage.local_fs(), str(path))


def test_a_wrong_key_or_no_key_is_named(key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sealed_bytes = sealed.seal(ROW)
    monkeypatch.setenv("FERRY_ENCRYPTION_KEY_FILE", str(new_key_file(tmp_path / "other.key")))
    with pytest.raises(SealedObjectError, match=r"^obj: encrypted with key id [0-9a-f]{16}, which .*other\.key does"):
        sealed.unseal(sealed_bytes, name="obj")
    monkeypatch.delenv("FERRY_ENCRYPTION_KEY_FILE")
    with pytest.raises(SealedObjectError, match=r"^obj: the object is encrypted .* set FERRY_ENCRYPTION_KEY_FILE"):
        sealed.unseal(sealed_bytes, name="obj")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("00" * 16 + "\n", r"line 1: a key is 32 bytes \(64 hex digits\), this one is 16 bytes"),
        ("00" * 33 + "\n", "this one is 33 bytes"),
        ("# only a comment\n", "holds no key"),
        ("zz" * 32 + "\n", "line 1: .* not hex"),
        (b"\xff\xfe" * 16, "not text"),
    ],
    ids=["short", "long", "empty", "not-hex", "binary"],
)
def test_a_bad_key_file_is_named_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes, reason: str
) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    monkeypatch.setenv("FERRY_ENCRYPTION_KEY_FILE", str(path))
    with pytest.raises(EncryptionKeyError, match=rf"^{path}.*{reason}"):
        sealed.seal(ROW)
    monkeypatch.setenv("FERRY_ENCRYPTION_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(EncryptionKeyError, match=r"missing\.key: cannot read the encryption key file"):
        sealed.seal(ROW)


def test_write_ahead_lines_are_sealed_one_by_one_and_a_torn_one_is_skipped(key: Path, tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    wal.append([{"customer_id": "cust-1234567890"}, {"customer_id": "cust-0987654321"}])
    segment = wal.seal()
    assert segment is not None
    raw = segment.path.read_bytes()
    assert b"cust-" not in raw
    assert raw.count(sealed.LINE_PREFIX) == 2
    with segment.path.open("ab") as fh:
        fh.write(raw.splitlines()[0][:50])  # a crash mid-write: never acknowledged
    assert [r["customer_id"] for r in segment.read()] == ["cust-1234567890", "cust-0987654321"]
    segment.path.write_bytes(raw[:60] + (b"A" if raw[60:61] != b"A" else b"B") + raw[61:])  # inside line 1
    try:
        with pytest.raises(SealedObjectError, match="line 1: encrypted object fails authentication"):
            segment.read()  # an acknowledged row is never skipped silently
    finally:
        segment.close()


def test_cli_makes_a_key_file_and_decrypts_one_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    path = tmp_path / "made.key"
    assert runner.invoke(app, ["keys", "data-key", str(path)]).exit_code == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = runner.invoke(app, ["keys", "data-key", str(path)])
    assert again.exit_code == 2
    assert "exists; a key file is never overwritten" in again.output
    monkeypatch.setenv("FERRY_ENCRYPTION_KEY_FILE", str(path))
    (tmp_path / "report.html").write_bytes(sealed.seal(b"<html>rows</html>"))
    done = runner.invoke(app, ["keys", "decrypt", str(tmp_path / "report.html"), "--out", str(tmp_path / "r.html")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "r.html").read_bytes() == b"<html>rows</html>"


def _objects(root: Path, n: int) -> dict[Path, bytes]:
    found = {}
    for i in range(n):
        path = root / "models" / "m" / "online" / "predictions" / f"{i:04d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = b"row %d " % i * 20
        path.write_bytes(sealed.seal(body))
        found[path] = body
    return found


@pytest.mark.integration
def test_rotate_killed_halfway_keeps_everything_readable_and_finishes_when_run_again(key: Path, tmp_path: Path) -> None:
    registry, work = tmp_path / "registry", tmp_path / "runs"
    objects = _objects(registry, 400)
    (work / "run").mkdir(parents=True)
    (work / "run" / "data.parquet").write_bytes(sealed.seal(b"run rows"))
    (registry / "models" / "m" / "channels.json").write_text("{}")  # in clear: left as it is
    old = sealed.load_ring(key).current_id
    env = {**os.environ, "FERRY_REGISTRY_URL": str(registry), "FERRY_WORK_DIR": str(work)}
    command = [str(Path(sys.executable).parent / "ferry"), "keys", "rotate"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        seen = 0
        for line in proc.stdout:
            seen += line.startswith(b"re-encrypted ")
            if seen == 20:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    ring = sealed.load_ring(key)
    assert len(ring.keys) == 2
    assert ring.ids()[1] == old
    ids = [sealed.key_id_of(p.read_bytes()) for p in objects]
    assert 20 <= ids.count(ring.current_id) < len(objects)  # killed halfway
    assert all(storage.read_bytes(storage.local_fs(), str(p)) == body for p, body in objects.items())

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "rotation finished" in done.stdout
    assert "began a rotation" not in done.stdout  # resumed, not begun again
    ring = sealed.load_ring(key)
    assert ring.ids() == [ids_new := ring.current_id]
    assert ids_new != old
    assert all(sealed.key_id_of(p.read_bytes()) == ids_new for p in objects)
    assert sealed.key_id_of((work / "run" / "data.parquet").read_bytes()) == ids_new
    assert all(storage.read_bytes(storage.local_fs(), str(p)) == body for p, body in objects.items())
    assert (registry / "models" / "m" / "channels.json").read_text() == "{}"


def test_rotate_reencrypts_write_ahead_lines_and_waits_for_a_file_a_service_holds(key: Path, tmp_path: Path) -> None:
    from ferry.storage.rotation import rotate

    root = tmp_path / "registry"
    idle, held = WriteAheadLog(root / "wal" / "idle"), WriteAheadLog(root / "wal" / "held")
    idle.append([{"prediction_id": "p-1"}])
    idle.close()  # left by a dead process: free to rewrite
    held.append([{"prediction_id": "p-2"}])  # a live service holds its open segment
    old = sealed.load_ring(key).current_id
    try:
        first = rotate(str(key), [storage.open_fs(str(root))])
        assert not first.finished
        assert len(first.pending) == 1
        assert sealed.load_ring(key).ids()[1] == old  # the old key stays while a held file needs it
        (path,) = (root / "wal" / "idle").glob("*.jsonl")
        line = path.read_bytes()
        assert sealed.key_id_of(sealed.line_envelope(line)) == first.key_id
        assert json.loads(sealed.unseal_line(line, name="idle")) == {"prediction_id": "p-1"}
    finally:
        held.close()
    second = rotate(str(key), [storage.open_fs(str(root))])
    assert second.finished
    assert second.key_id == first.key_id  # resumed, not begun again
    assert sealed.load_ring(key).ids() == [first.key_id]
