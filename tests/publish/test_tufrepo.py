"""Edge bundles and the TUF repository, checked by python-tuf's own client over a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tuf.api.exceptions import ExpiredMetadataError
from tuf.ngclient import Updater

from ferry.data import to_onnx_inputs
from ferry.publish.bundle import MEMBERS, build_bundle
from ferry.publish.tufrepo import KeyStore, TufRepository, describe, target_name
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "repo"
    d.mkdir()
    return d


@pytest.fixture
def static_host(repo_dir: Path, serve_dir: Callable[[Path], str]) -> str:
    return serve_dir(repo_dir)


def client(url: str, trusted_root: bytes, work: Path) -> Updater:
    meta, cache = work / "metadata", work / "targets"
    meta.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    return Updater(
        metadata_dir=str(meta),
        metadata_base_url=f"{url}/metadata/",
        target_base_url=f"{url}/targets/",
        target_dir=str(cache),
        bootstrap=trusted_root,
    )


def fetch(updater: Updater, name: str) -> bytes:
    """Refreshes the top-level metadata on first use (get_targetinfo does), then downloads and verifies."""
    info = updater.get_targetinfo(name)
    assert info is not None, f"no target {name}"
    return Path(updater.download_target(info)).read_bytes()


def test_bundle_holds_the_model_and_a_golden_sample_that_reproduces(churn_champion: dict[str, str]) -> None:
    registry = Registry(churn_champion["registry"])
    version = registry.get(churn_champion["version"])
    bundle = build_bundle(registry, version)
    assert build_bundle(registry, version).data == bundle.data  # reproducible bytes
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as tar:
        assert tar.getnames() == list(MEMBERS)
        assert all(m.isfile() for m in tar.getmembers())
        manifest = json.loads(tar.extractfile("bundle.json").read())  # type: ignore[union-attr]
        model = tar.extractfile("model.onnx").read()  # type: ignore[union-attr]
    assert model == registry.read_bytes(version, "model.onnx")
    assert manifest["version"] == version.id
    assert manifest["outputs"] == ["label", "probabilities"]
    assert manifest["gate"]["passed"] is True
    schema = Schema.from_dict(manifest["schema"])
    rows = pd.DataFrame(manifest["golden"]["rows"], columns=list(schema.feature_names))
    scores = OnnxScorer(model).score(to_onnx_inputs(rows, schema))
    assert len(rows) == 32
    np.testing.assert_array_equal(scores.probabilities, np.asarray(manifest["golden"]["probabilities"], np.float32))


def test_publish_is_verified_by_the_tuf_client(
    churn_champion: dict[str, str], repo_dir: Path, static_host: str, tmp_path: Path
) -> None:
    registry = Registry(churn_champion["registry"])
    version = registry.get(churn_champion["version"])
    repo = TufRepository(str(repo_dir), KeyStore(tmp_path / "keys"))
    repo.init()
    bundle = build_bundle(registry, version)
    name = target_name("churn", "edge/stable")
    first = repo.publish(name, bundle.data, custom={"version": version.id})
    assert first.changed
    assert first.targets_version == 2
    again = repo.publish(name, bundle.data, custom={"version": version.id})
    assert not again.changed
    assert again.timestamp_version == first.timestamp_version
    assert (repo_dir / "targets" / "churn" / "edge-stable" / f"{bundle.sha256}.bundle.tar").exists()
    assert not list(repo_dir.rglob("*.pem"))  # keys never land in the served repository

    updater = client(static_host, repo.trusted_root(), tmp_path / "device")
    assert fetch(updater, name) == bundle.data
    assert updater.get_targetinfo(name).custom == {"version": version.id}  # type: ignore[union-attr]

    repo.publish(name, b"a newer bundle", custom={"version": "next"})
    newer = client(static_host, repo.trusted_root(), tmp_path / "device")
    assert fetch(newer, name) == b"a newer bundle"
    assert describe(repo)["targets"][name]["version"] == "next"


def test_timestamp_refresh_and_key_rotation_keep_clients_working(
    repo_dir: Path, static_host: str, tmp_path: Path
) -> None:
    repo = TufRepository(str(repo_dir), KeyStore(tmp_path / "keys"))
    repo.init()
    repo.publish("m/edge-beta/bundle.tar", b"one")
    device = tmp_path / "device"
    assert fetch(client(static_host, repo.trusted_root(), device), "m/edge-beta/bundle.tar") == b"one"
    assert repo.refresh_timestamp() == 3
    for role in ("timestamp", "targets", "root"):
        repo.rotate_key(role)
    repo.publish("m/edge-beta/bundle.tar", b"two")
    assert repo.root_version() == 4
    assert fetch(client(static_host, repo.trusted_root(), device), "m/edge-beta/bundle.tar") == b"two"
    assert (tmp_path / "keys" / "root.pem.old").exists()


def test_expired_timestamp_is_refused_by_clients(repo_dir: Path, static_host: str, tmp_path: Path) -> None:
    repo = TufRepository(str(repo_dir), KeyStore(tmp_path / "keys"), expiry={"timestamp": timedelta(seconds=-1)})
    repo.init()
    repo.publish("m/edge-beta/bundle.tar", b"one")
    with pytest.raises(ExpiredMetadataError):
        client(static_host, repo.trusted_root(), tmp_path / "device").refresh()


def test_init_refuses_an_existing_repository(repo_dir: Path, tmp_path: Path) -> None:
    from ferry.errors import ConfigError

    repo = TufRepository(str(repo_dir), KeyStore(tmp_path / "keys"))
    repo.init()
    with pytest.raises(ConfigError, match="already holds"):
        repo.init()


PUBLISHER = """
import sys
from ferry.publish.tufrepo import KeyStore, TufRepository
repo = TufRepository(sys.argv[1], KeyStore(sys.argv[2]))
for i in range(5):
    repo.publish(f"m/edge-{sys.argv[3]}/bundle.tar", f"{sys.argv[3]}-{i}".encode())
"""


def test_racing_publishers_leave_consistent_metadata(repo_dir: Path, static_host: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    repo = TufRepository(str(repo_dir), KeyStore(keys))
    repo.init()
    procs = [
        subprocess.Popen([sys.executable, "-c", PUBLISHER, str(repo_dir), str(keys), tag]) for tag in ("a", "b", "c")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    state = describe(repo)
    assert state["snapshot"] == 1 + 15
    assert state["timestamp"]["version"] == 1 + 15
    updater = client(static_host, repo.trusted_root(), tmp_path / "device")
    for tag in ("a", "b", "c"):
        assert fetch(updater, f"m/edge-{tag}/bundle.tar") == f"{tag}-4".encode()


THRESHOLDS = {"root": 2, "targets": 2, "timestamp": 2}


def test_thresholds_put_several_keys_in_root_and_every_signature_on_the_metadata(
    repo_dir: Path, static_host: str, tmp_path: Path
) -> None:
    keys = KeyStore(tmp_path / "keys")
    repo = TufRepository(str(repo_dir), keys, thresholds=THRESHOLDS)
    repo.init()
    repo.publish("m/edge-beta/bundle.tar", b"one")
    assert keys.slots("targets") == [1, 2]
    assert keys.slots("snapshot") == [1]
    roles = describe(repo)["roles"]
    assert roles["targets"] == {"threshold": 2, "keys": 2}
    assert roles["snapshot"] == {"threshold": 1, "keys": 1}
    targets = json.loads((repo_dir / "metadata" / "2.targets.json").read_text())
    assert len(targets["signatures"]) == 2
    device = tmp_path / "device"
    assert fetch(client(static_host, repo.trusted_root(), device), "m/edge-beta/bundle.tar") == b"one"

    # A rotation of one root key and one targets key: the device follows the new root and the new targets key.
    assert repo.rotate_key("root", slot=2) == 2
    assert repo.rotate_key("targets", slot=1) == 3
    repo.publish("m/edge-beta/bundle.tar", b"two")
    assert fetch(client(static_host, repo.trusted_root(), device), "m/edge-beta/bundle.tar") == b"two"
    assert (tmp_path / "keys" / "root-2.pem.old").exists()


def test_metadata_one_signature_short_of_its_threshold_is_refused(
    repo_dir: Path, static_host: str, tmp_path: Path
) -> None:
    from tuf.api.exceptions import UnsignedMetadataError

    repo = TufRepository(str(repo_dir), KeyStore(tmp_path / "keys"), thresholds=THRESHOLDS)
    repo.init()
    repo.publish("m/edge-beta/bundle.tar", b"one")
    path = repo_dir / "metadata" / "2.targets.json"
    md = json.loads(path.read_text())
    md["signatures"] = md["signatures"][:1]
    path.write_text(json.dumps(md))
    updater = client(static_host, repo.trusted_root(), tmp_path / "device")
    with pytest.raises(UnsignedMetadataError, match="targets"):
        updater.get_targetinfo("m/edge-beta/bundle.tar")


def test_a_missing_key_file_stops_the_publish_before_anything_is_written(repo_dir: Path, tmp_path: Path) -> None:
    from ferry.errors import ConfigError

    keys = KeyStore(tmp_path / "keys")
    repo = TufRepository(str(repo_dir), keys, thresholds=THRESHOLDS)
    repo.init()
    before = sorted(p.name for p in (repo_dir / "metadata").iterdir())
    timestamp = (repo_dir / "metadata" / "timestamp.json").read_bytes()
    keys.path("timestamp", 2).unlink()
    with pytest.raises(ConfigError, match=r"'timestamp' needs 2 signatures but only 1"):
        repo.publish("m/edge-beta/bundle.tar", b"one")
    assert sorted(p.name for p in (repo_dir / "metadata").iterdir()) == before
    assert (repo_dir / "metadata" / "timestamp.json").read_bytes() == timestamp


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [({"owner": 2}, "'owner' is not a TUF role"), ({"root": 0}, "root must be"), ({"targets": "2"}, "targets must be")],
)
def test_bad_thresholds_are_named(tmp_path: Path, thresholds: dict[str, int], message: str) -> None:
    from ferry.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        TufRepository(str(tmp_path / "repo"), KeyStore(tmp_path / "keys"), thresholds=thresholds)


def test_rotating_a_key_root_does_not_trust_is_refused(repo_dir: Path, tmp_path: Path) -> None:
    from ferry.errors import ConfigError

    keys = KeyStore(tmp_path / "keys")
    repo = TufRepository(str(repo_dir), keys)
    repo.init()
    keys.path("targets").unlink()
    keys.create("targets")  # a stranger's key in the targets slot
    with pytest.raises(ConfigError, match="not a key root v1 trusts"):
        repo.rotate_key("targets")
    assert repo.root_version() == 1


def test_signing_keys_stored_under_a_passphrase_sign_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from ferry.errors import ConfigError
    from ferry.publish.channels import open_repository
    from ferry.settings import EdgeSettings

    keys = KeyStore(tmp_path / "keys", passphrase=b"correct horse battery")
    repo = TufRepository(str(tmp_path / "repo"), keys)
    repo.init()
    pems = sorted((tmp_path / "keys").glob("*.pem"))
    assert pems
    assert all(p.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") for p in pems)
    assert repo.refresh_timestamp() == 2  # the keys sign
    with pytest.raises(ConfigError, match=r"signing key .*timestamp\.pem of role 'timestamp': wrong passphrase"):
        KeyStore(tmp_path / "keys", passphrase=b"wrong horse battery").signer("timestamp")
    with pytest.raises(ConfigError, match="is encrypted; set FERRY_EDGE_KEY_PASSPHRASE"):
        KeyStore(tmp_path / "keys").signer("timestamp")
    with pytest.raises(ValueError, match="key_passphrase"):
        EdgeSettings(key_passphrase=SecretStr("short"))

    clear = KeyStore(tmp_path / "clear")
    clear.create("targets")
    assert b"ENCRYPTED" not in clear.path("targets").read_bytes()
    settings = EdgeSettings(repo_url=str(tmp_path / "r2"), keys_dir=str(tmp_path / "clear"))
    settings.key_passphrase = SecretStr("s3cret-phrase")
    open_repository(settings).keys.signer("targets")  # a key kept in clear is encrypted when first used
    assert clear.path("targets").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
