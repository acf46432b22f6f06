"""Registry versions: registration, content addressing, immutability, lookup, integrity, and a non-local filesystem."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import pytest
from helpers import write_artifacts

from ferry import storage
from ferry.errors import ChannelError, LockTimeout, PromotionRefused, RegistryError, VersionNotFound
from ferry.registry import ModelVersion, Registry, version_id
from ferry.settings import StorageSettings

PASSED = {"metrics": {"roc_auc": 0.81}, "gate": {"passed": True, "checks": 5, "failed": 0}}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / "registry"), actor="tester")


@pytest.fixture
def memory_url() -> Iterator[str]:
    root = f"/ferry-test-{uuid.uuid4().hex}"
    yield f"memory://{root}"
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_construction_does_no_io(tmp_path: Path) -> None:
    Registry(str(tmp_path / "not-yet"))
    Registry("nosuchscheme://bucket/prefix")
    assert not (tmp_path / "not-yet").exists()


def test_from_settings_uses_url_timeout_and_actor(tmp_path: Path) -> None:
    settings = StorageSettings(registry_url=str(tmp_path / "r"), actor="alice", lock_timeout_s=7)
    reg = Registry.from_settings(settings)
    assert (reg.url, reg.lock_timeout_s) == (str(tmp_path / "r"), 7)
    v = reg.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    assert reg.promote(v.id, "batch", reason="first").actor == "alice"


def test_register_writes_files_and_manifest(registry: Registry, tmp_path: Path) -> None:
    files = write_artifacts(tmp_path / "run", "1")
    v = registry.register("churn", files, PASSED)

    vdir = tmp_path / "registry" / "models" / "churn" / "versions" / v.id
    assert sorted(p.name for p in vdir.iterdir()) == sorted([*files, "manifest.json"])
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert manifest["id"] == v.id
    assert manifest["model"] == "churn"
    assert manifest["created_at"].endswith("+00:00")
    assert manifest["info"] == PASSED
    for name, path in files.items():
        data = path.read_bytes()
        assert (vdir / name).read_bytes() == data
        assert manifest["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert v.gate_passed is True
    assert not list((tmp_path / "registry" / "models" / "churn" / ".staging").iterdir())


def test_version_id_is_sha256_of_content_file_hashes(registry: Registry, tmp_path: Path) -> None:
    files = write_artifacts(tmp_path / "run", "1")
    v = registry.register("churn", files, PASSED)
    pairs = sorted(
        (name, hashlib.sha256(files[name].read_bytes()).hexdigest())
        for name in ("model.onnx", "schema.json", "lineage.json")
    )
    expected = hashlib.sha256("".join(f"{n}\t{h}\n" for n, h in pairs).encode()).hexdigest()[:16]
    assert v.id == expected
    # A second registry given the same content computes the same id.
    other = Registry(str(tmp_path / "other"))
    assert other.register("churn", files, {"gate": {"passed": False}}).id == v.id


def test_version_id_ignores_non_content_files_but_not_the_model(registry: Registry, tmp_path: Path) -> None:
    v1 = registry.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    v1_again = registry.register("churn", write_artifacts(tmp_path / "b", "1", metrics='{"roc_auc": 0.5}'), {})
    v2 = registry.register("churn", write_artifacts(tmp_path / "c", "2"), PASSED)
    assert v1_again == v1
    assert v2.id != v1.id


def test_version_id_uses_all_files_when_no_content_file_is_present(tmp_path: Path) -> None:
    assert version_id({"a.bin": "1" * 64}) != version_id({"a.bin": "1" * 64, "b.bin": "2" * 64})
    assert version_id({"model.onnx": "1" * 64}) == version_id({"model.onnx": "1" * 64, "b.bin": "2" * 64})


def test_register_is_idempotent_and_never_overwrites(registry: Registry, tmp_path: Path) -> None:
    v1 = registry.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    vdir = Path(registry.file_url(v1, "metrics.json")).parent
    before = {p.name: p.read_bytes() for p in vdir.iterdir()}

    again = registry.register("churn", write_artifacts(tmp_path / "b", "1", metrics='{"roc_auc": 0.1}'), {"x": 1})

    assert again.id == v1.id
    assert again.created_at == v1.created_at
    assert dict(again.info) == PASSED
    assert {p.name: p.read_bytes() for p in vdir.iterdir()} == before
    assert [v.id for v in registry.versions("churn")] == [v1.id]


def test_concurrent_registration_of_the_same_content_gives_one_version(tmp_path: Path) -> None:
    url = str(tmp_path / "registry")
    write_artifacts(tmp_path / "run", "same")
    code = (
        "import sys, pathlib\n"
        "from ferry.registry import Registry\n"
        "names = ['model.onnx', 'schema.json', 'lineage.json', 'metrics.json', 'gate.json']\n"
        "files = {n: pathlib.Path(sys.argv[2]) / n for n in names}\n"
        "print(Registry(sys.argv[1]).register('churn', files, {'gate': {'passed': True}}).id)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    reg = Registry(url)
    assert len(ids) == 1
    assert [v.id for v in reg.versions("churn")] == list(ids)
    assert reg.verify_version(reg.versions("churn")[0]) == []


@pytest.mark.parametrize("name", ["", "Churn", "-churn", "churn/x", "a" * 65, "churn model", "../x", "churn\n"])
def test_bad_model_name_is_refused(registry: Registry, tmp_path: Path, name: str) -> None:
    with pytest.raises(RegistryError, match="model name"):
        registry.register(name, write_artifacts(tmp_path / "a", "1"), PASSED)


def test_bad_files_and_info_are_refused(registry: Registry, tmp_path: Path) -> None:
    files = write_artifacts(tmp_path / "a", "1")
    with pytest.raises(RegistryError, match="files is empty"):
        registry.register("churn", {}, PASSED)
    with pytest.raises(RegistryError, match=r"artifact name '\.\./evil'"):
        registry.register("churn", {"../evil": files["model.onnx"]}, PASSED)
    with pytest.raises(RegistryError, match=r"artifact name 'manifest\.json'"):
        registry.register("churn", {"manifest.json": files["model.onnx"]}, PASSED)
    with pytest.raises(RegistryError, match=r"cannot read files\['model.onnx'\]"):
        registry.register("churn", {"model.onnx": tmp_path / "missing.onnx"}, PASSED)
    with pytest.raises(RegistryError, match="info is not JSON-serialisable"):
        registry.register("churn", files, {"metrics": {"roc_auc": float("nan")}})
    with pytest.raises(RegistryError, match="info is not JSON-serialisable"):
        registry.register("churn", files, {"when": object()})
    assert registry.models() == []


def test_models_versions_and_get_by_prefix(registry: Registry, tmp_path: Path) -> None:
    a = registry.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    b = registry.register("churn", write_artifacts(tmp_path / "b", "2"), PASSED)
    c = registry.register("fraud", write_artifacts(tmp_path / "c", "3"), PASSED)

    assert registry.models() == ["churn", "fraud"]
    assert [v.id for v in registry.versions("churn")] == [a.id, b.id]
    assert registry.versions("nothing-here") == []
    assert registry.get(a.id) == a
    assert registry.get(a.id[:4], model="churn") == a
    assert registry.get(c.id[:6]) == c
    with pytest.raises(VersionNotFound, match="any model"):
        registry.get("ffff0000ffff0000" if not a.id.startswith("ffff") else "0000ffff0000ffff")
    with pytest.raises(VersionNotFound, match="model 'fraud'"):
        registry.get(a.id, model="fraud")
    with pytest.raises(RegistryError, match="4 to 16 hex"):
        registry.get(a.id[:3])
    with pytest.raises(RegistryError, match="4 to 16 hex"):
        registry.get("not-hex!")


def test_same_content_in_two_models_makes_a_bare_prefix_ambiguous(registry: Registry, tmp_path: Path) -> None:
    files = write_artifacts(tmp_path / "a", "1")
    v1 = registry.register("churn", files, PASSED)
    v2 = registry.register("churn-eu", files, PASSED)
    assert v1.id == v2.id
    with pytest.raises(RegistryError, match="ambiguous") as info:
        registry.get(v1.id[:8])
    assert f"churn/{v1.id}" in str(info.value)
    assert f"churn-eu/{v1.id}" in str(info.value)
    assert registry.get(v1.id[:8], model="churn-eu").model == "churn-eu"


def test_file_url_and_read_bytes(registry: Registry, tmp_path: Path) -> None:
    files = write_artifacts(tmp_path / "a", "1")
    v = registry.register("churn", files, PASSED)
    assert Path(registry.file_url(v, "model.onnx")).read_bytes() == files["model.onnx"].read_bytes()
    assert registry.read_bytes(v, "schema.json") == files["schema.json"].read_bytes()
    with pytest.raises(RegistryError, match=r"no artifact 'model\.skops'"):
        registry.file_url(v, "model.skops")


def test_verify_version_detects_edited_missing_and_manifest_changes(registry: Registry, tmp_path: Path) -> None:
    v = registry.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    assert registry.verify_version(v) == []
    vdir = Path(registry.file_url(v, "model.onnx")).parent

    (vdir / "model.onnx").write_bytes(b"tampered")
    (vdir / "metrics.json").unlink()
    assert registry.verify_version(v) == ["metrics.json", "model.onnx"]
    with pytest.raises(RegistryError, match="changed since it was registered"):
        registry.read_bytes(v, "model.onnx")
    with pytest.raises(RegistryError, match="damaged"):
        registry.promote(v.id, "online/champion", reason="ship it")

    manifest = json.loads((vdir / "manifest.json").read_text())
    manifest["info"]["gate"]["passed"] = False
    (vdir / "manifest.json").write_text(json.dumps(manifest))
    assert "manifest.json" in registry.verify_version(v)


def test_versions_are_not_rewritten_by_promotion(registry: Registry, tmp_path: Path) -> None:
    v = registry.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    vdir = Path(registry.file_url(v, "model.onnx")).parent
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in vdir.iterdir()}
    registry.promote(v.id[:6], "online/champion", reason="first")
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in vdir.iterdir()} == before


def test_memory_filesystem_round_trip(memory_url: str, tmp_path: Path) -> None:
    reg = Registry(memory_url, actor="tester", lock_timeout_s=5)
    a = reg.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    b = reg.register("churn", write_artifacts(tmp_path / "b", "2"), PASSED)
    failed = reg.register("churn", write_artifacts(tmp_path / "c", "3"), {"gate": {"passed": False}})
    assert reg.register("churn", write_artifacts(tmp_path / "d", "1"), {}) == a

    assert reg.models() == ["churn"]
    assert [v.id for v in reg.versions("churn")] == [a.id, b.id, failed.id]
    assert reg.get(b.id[:5]) == b
    assert reg.file_url(a, "model.onnx").startswith("memory://")
    assert reg.read_bytes(a, "model.onnx") == b"onnx-bytes-1"
    assert reg.verify_version(a) == []

    reg.promote(a.id, "edge/beta", reason="first")
    reg.promote(b.id, "edge/beta", reason="second")
    with pytest.raises(PromotionRefused):
        reg.promote(failed.id, "edge/beta", reason="third")
    rec = reg.rollback("edge/beta", model="churn", reason="b misbehaves")
    assert (rec.from_version, rec.to_version) == (b.id, a.id)
    assert reg.channel("churn", "edge/beta") == a.id
    with pytest.raises(ChannelError, match="nothing to roll back to"):
        reg.rollback("edge/beta", model="churn")
    report = reg.verify_audit("churn")
    assert report.ok
    assert report.n_records == 3
    # The lock object is gone after each move.
    fs = fsspec.filesystem("memory")
    assert not fs.exists(f"{memory_url.removeprefix('memory://')}/models/churn/.lock")

    # Tampering is caught on this filesystem too.
    log_path = f"{memory_url.removeprefix('memory://')}/models/churn/audit.jsonl"
    lines = fs.cat_file(log_path).decode().splitlines(keepends=True)
    fs.pipe_file(log_path, "".join(lines[:1] + lines[2:]).encode())
    assert reg.verify_audit("churn").first_bad == 2


def test_memory_lock_held_elsewhere_times_out_naming_the_lock(memory_url: str, tmp_path: Path) -> None:
    reg = Registry(memory_url, lock_timeout_s=0.2)
    v = reg.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    fs = fsspec.filesystem("memory")
    lock_path = f"{memory_url.removeprefix('memory://')}/models/churn/.lock"
    fs.pipe_file(lock_path, json.dumps({"pid": 1, "host": "other", "since": "2026-01-01T00:00:00+00:00"}).encode())
    with pytest.raises(LockTimeout) as info:
        reg.promote(v.id, "batch", reason="blocked")
    assert lock_path in str(info.value)
    assert "pid 1 on other" in str(info.value)
    fs.rm(lock_path)
    assert reg.promote(v.id, "batch", reason="unblocked").seq == 1


def test_local_lock_times_out_naming_the_lock(registry: Registry, tmp_path: Path) -> None:
    v = registry.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    quick = Registry(registry.url, lock_timeout_s=0.2)
    lock_path = str(tmp_path / "registry" / "models" / "churn" / ".lock")
    fs, _ = storage.open_fs(registry.url)
    with storage.lock(fs, lock_path, 1.0), pytest.raises(LockTimeout, match=lock_path.replace(".", r"\.")):
        quick.promote(v.id, "batch", reason="blocked")
    assert quick.promote(v.id, "batch", reason="free again").seq == 1


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    fs, root = storage.open_fs(str(tmp_path))
    target = f"{root}/sub/file.bin"
    storage.atomic_write_bytes(fs, target, b"one")
    storage.atomic_write_bytes(fs, target, b"two")
    assert storage.read_bytes(fs, target) == b"two"
    assert storage.exists(fs, target)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["file.bin"]
    assert storage.sha256_bytes(b"two") == hashlib.sha256(b"two").hexdigest()


def test_model_version_equality_ignores_payload() -> None:
    a = ModelVersion(id="0" * 16, model="m", created_at="t", files={}, info={"x": 1})
    b = ModelVersion(id="0" * 16, model="m", created_at="t", files={}, info={"x": 2})
    assert a == b
    assert hash(a) == hash(b)
    assert a.gate_passed is None


def test_memory_filesystem_lock_serialises_threads(memory_url: str, tmp_path: Path) -> None:
    reg = Registry(memory_url, actor="tester", lock_timeout_s=30)
    pairs = [
        (
            reg.register("churn", write_artifacts(tmp_path / f"{t}a", f"{t}a"), PASSED),
            reg.register("churn", write_artifacts(tmp_path / f"{t}b", f"{t}b"), PASSED),
        )
        for t in range(4)
    ]

    def work(t: int) -> None:
        for i in range(5):
            reg.promote(pairs[t][i % 2].id, "online/champion", reason=f"thread {t} move {i}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, range(4)))
    report = reg.verify_audit("churn")
    assert report.ok, report
    assert [r.seq for r in reg.audit("churn")] == list(range(1, 21))


def test_a_killed_lock_holder_does_not_leave_a_stale_local_lock(registry: Registry, tmp_path: Path) -> None:
    v = registry.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    lock_path = str(tmp_path / "registry" / "models" / "churn" / ".lock")
    code = (
        "import os, sys, fsspec\n"
        "from ferry import storage\n"
        "with storage.lock(fsspec.filesystem('file'), sys.argv[1], 5):\n"
        "    print('held', flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, lock_path], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "held"
    assert proc.returncode == -9
    assert Registry(registry.url, lock_timeout_s=1).promote(v.id, "batch", reason="after crash").seq == 1
