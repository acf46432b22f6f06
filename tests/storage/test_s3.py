"""The registry on S3: a real S3-compatible server (moto's, a process) reached through s3fs over HTTP.

Faults come from the fault proxy in front of it (see ``s3_support``): throttling, 500s and dropped connections are
retried; a write that keeps failing leaves the old state visible and nothing half-written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from helpers import loop, write_artifacts
from s3_support import Fault
from typer.testing import CliRunner

from ferry import batch, demo_data, status, storage
from ferry.cli.app import app
from ferry.errors import RegistryError, VersionNotFound
from ferry.publish import channels as publish
from ferry.publish.tufrepo import KeyStore, TufRepository
from ferry.registry import Registry
from ferry.settings import TrainSettings

pytestmark = pytest.mark.integration

PASSED = {"gate": {"passed": True}}


def test_the_loop_runs_on_s3(s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train -> register -> promote -> publish the edge bundle -> batch score -> status, every file on S3."""
    registry_url = f"{s3_env}/registry"
    monkeypatch.setenv("FERRY_REGISTRY_URL", registry_url)
    schema = tmp_path / "schema.yaml"
    schema.write_text(demo_data.churn_schema().dump_yaml())
    data = demo_data.write_demo(tmp_path / "data", n_rows=1500, seed=5, fmt="parquet")
    registry = Registry.from_settings()
    fast = TrainSettings(estimator="logistic_regression", cv_folds=2)
    version, gate, _ = loop(
        data, schema, registry, tmp_path / "runs", train=fast, channels=("online/champion", "edge/stable")
    )
    assert gate["passed"], gate["reasons"]
    assert registry.channel("churn", "edge/stable") == version.id
    assert registry.verify_version(version) == []
    assert registry.file_url(version, "model.onnx").startswith(f"{registry_url}/models/churn/versions/")

    repo = TufRepository(f"{s3_env}/edge", KeyStore(tmp_path / "keys"))
    repo.init()
    published = publish.publish_channel(registry, repo, "churn", "edge/stable")
    fs, root = storage.open_fs(f"{s3_env}/edge")
    assert storage.exists(fs, f"{root}/targets"), fs.ls(root)
    assert published.target == "churn/edge-stable/bundle.tar"
    assert published.changed

    summary = batch.score(str(data), f"{s3_env}/scores", registry)
    assert summary.rows == pq.read_table(data).num_rows
    view = status.collect(registry, "churn")
    assert view.channels["online/champion"] == version.id
    assert view.batch[-1]["output"].startswith(f"{s3_env}/scores")
    assert view.skew == []

    result = CliRunner().invoke(app, ["status", "--model", "churn"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert version.id in result.output


def test_missing_bucket_and_refused_credentials_are_one_clear_line(s3_env: str, s3_server: Any) -> None:
    missing = "s3://no-such-bucket-ferry/registry"
    with pytest.raises(RegistryError) as info:
        Registry(missing).models()
    message = str(info.value)
    assert "\n" not in message
    assert missing in message
    assert "bucket 'no-such-bucket-ferry' does not exist" in message
    assert "create it" in message

    result = CliRunner().invoke(app, ["status", "--registry", missing], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "does not exist" in result.output

    s3_server.moto.require_auth(True)
    try:
        with pytest.raises(RegistryError) as info:
            Registry(f"{s3_env}/registry").models()
    finally:
        s3_server.moto.require_auth(False)
    message = str(info.value)
    assert "\n" not in message
    assert f"{s3_env}/registry" in message
    assert "refused these credentials" in message
    assert "AWS_ACCESS_KEY_ID" in message


def test_throttling_500s_and_dropped_connections_are_retried(s3_env: str, s3_server: Any, tmp_path: Path) -> None:
    registry = Registry(f"{s3_env}/registry", actor="tester")
    faults = [
        Fault("slowdown", method="PUT", times=2),
        Fault("internal", method="PUT", times=1),
        Fault("drop", method="PUT", times=1),
        Fault("drop-after", method="PUT", path="/.lock", times=1),
        Fault("slowdown", method="GET", times=1),
        Fault("drop", method="GET", times=1),
    ]
    s3_server.inject(*faults)
    v = registry.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    record = registry.promote(v.id, "online/champion", reason="through faults")
    assert [f.hits for f in s3_server.clear()] == [f.times for f in faults]
    assert record.seq == 1
    assert registry.verify_audit("churn").ok
    assert registry.verify_version(v) == []
    assert registry.channel("churn", "online/champion") == v.id


def test_a_write_that_keeps_failing_is_never_half_visible(s3_env: str, s3_server: Any, tmp_path: Path) -> None:
    # no retries, configured the usual way, so that giving up takes a second, not half a minute
    few = {"config_kwargs": {"retries": {"mode": "standard", "max_attempts": 1}}}
    registry = Registry(f"{s3_env}/registry", storage_options=few, actor="tester", lock_timeout_s=5)
    first = registry.register("churn", write_artifacts(tmp_path / "a", "1"), PASSED)
    registry.promote(first.id, "online/champion", reason="first")
    fs, root = registry.open_store()
    channels_path = f"{root}/models/churn/channels.json"
    before = storage.read_bytes(fs, channels_path)

    # every copy into a version's manifest.json fails: the version never appears, its staging is removed
    s3_server.inject(Fault("internal", method="PUT", path="/manifest.json", header="x-amz-copy-source", times=-1))
    with pytest.raises(OSError, match="internal error"):
        registry.register("churn", write_artifacts(tmp_path / "b", "2"), PASSED)
    assert [v.id for v in registry.versions("churn")] == [first.id]
    with pytest.raises(VersionNotFound):
        registry.get("0000", model="churn")

    # rewriting channels.json keeps failing: readers keep the old file whole
    s3_server.inject(Fault("internal", method="PUT", path="/channels.json", times=-1))
    with pytest.raises(OSError, match="internal error"):
        storage.atomic_write_bytes(fs, channels_path, b'{"torn": ')
    s3_server.clear()
    assert storage.read_bytes(fs, channels_path) == before

    # a streamed write that fails half-way is never renamed into place, and its temporary is removed
    def half(fh: Any) -> None:
        fh.write(b'{"torn": ')
        raise ValueError("the writer stopped half-way")

    with pytest.raises(ValueError, match="half-way"):
        storage.atomic_write(fs, channels_path, half)
    assert storage.read_bytes(fs, channels_path) == before
    assert json.loads(before)["online/champion"]["version"] == first.id
    leftovers = [p for p in fs.find(f"{root}/models/churn") if p.endswith(".tmp") or "/.staging" in p]
    assert leftovers == []

    second = registry.register("churn", write_artifacts(tmp_path / "b", "2"), PASSED)
    registry.promote(second.id, "online/champion", reason="after the faults")
    assert registry.verify_audit("churn").ok


def test_report_links_on_s3_are_presigned_urls_that_expire_and_local_ones_stay_paths(
    s3_env: str, s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import parse_qs, urlsplit

    import httpx

    from ferry.settings import StorageSettings
    from ferry.train.summary import as_link

    fs, path = storage.open_fs(f"{s3_env}/registry/models/churn/monitor/reports/r.html")
    storage.atomic_write_bytes(fs, path, b"<html>the report</html>")
    monkeypatch.setenv("FERRY_LINK_EXPIRY_S", "600")
    url = as_link(f"{s3_env}/registry/models/churn/monitor/reports/r.html")
    bucket = s3_env.removeprefix("s3://")
    assert url.startswith(f"{s3_server.url}/{bucket}/registry/models/churn/monitor/reports/r.html?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"  # SigV4, which every region accepts
    assert query["X-Amz-Expires"] == "600"
    assert query["X-Amz-Credential"].startswith("ferry-test/")
    assert len(query["X-Amz-Signature"]) == 64
    assert httpx.get(url).content == b"<html>the report</html>"  # a browser needs nothing but the link
    assert "X-Amz-Expires=3600&" in storage.link(f"{s3_env}/registry/x", expiry_s=3600)
    local = tmp_path / "gate.html"
    assert as_link(str(local)) == local.as_uri()  # a local registry: a file path
    assert as_link("https://example.org/r.html") == "https://example.org/r.html"
    monkeypatch.setenv("FERRY_LINK_EXPIRY_S", "30")
    with pytest.raises(ValueError, match="link_expiry_s"):
        StorageSettings()


def test_the_demo_clears_only_an_earlier_demos_registry_on_s3(s3_env: str) -> None:
    """``ferry demo`` with FERRY_REGISTRY_URL on S3: a prefix an earlier demo made is cleared, one holding anything
    else is refused and left whole."""
    import s3fs

    from ferry.cli.demo_steps import MARKER, fresh_world
    from ferry.errors import FerryError

    fs = s3fs.S3FileSystem()
    bucket = s3_env.removeprefix("s3://")
    ours, theirs = f"{s3_env}/demo", f"{s3_env}/lake"
    fresh_world(ours)
    fs.pipe_file(f"{bucket}/demo/models/churn/old.json", b"{}")
    fs.pipe_file(f"{bucket}/lake/events.parquet", b"a user's data")
    with pytest.raises(FerryError, match="lake holds data the demo did not make"):
        fresh_world(ours, theirs)
    assert fs.exists(f"{bucket}/demo/models/churn/old.json")  # nothing is cleared unless everything may be
    fresh_world(ours)
    fs.invalidate_cache()
    assert [p.rpartition("/")[2] for p in fs.find(f"{bucket}/demo")] == [MARKER]
    assert fs.cat_file(f"{bucket}/lake/events.parquet") == b"a user's data"
