"""The device agent against a real static HTTP host: install, self-test, switch, and refusing bad models."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from edge_support import NAME, Setup, break_golden, edge_alone, retar, with_version
from ferry_edge.agent import Agent
from ferry_edge.bundle import target_name, unpack
from ferry_edge.errors import BundleRejected, ConfigError, InputError, NoModel, SelfTestIncomplete, SyncError

from ferry.data import to_onnx_inputs, validate
from ferry.publish import bundle as publisher_bundle
from ferry.publish import tufrepo
from ferry.publish.tufrepo import KeyStore, TufRepository
from ferry.scoring import OnnxScorer


def test_sync_installs_and_predictions_equal_the_registry_model(setup: Setup) -> None:
    result = setup.agent.sync()
    assert result.changed
    assert result.version == setup.version.id
    assert result.sha256 == setup.bundle.sha256
    assert not setup.agent.sync().changed  # second sync: up to date
    rows = setup.rows()
    got = setup.agent.active().predict(rows)
    expected = OnnxScorer(setup.registry.read_bytes(setup.version, "model.onnx")).score(
        to_onnx_inputs(validate(pd.read_parquet(setup.data).head(50), setup.schema, require_target=False), setup.schema)
    )
    probabilities = [[p.probabilities["0"], p.probabilities["1"]] for p in got]  # type: ignore[union-attr]
    np.testing.assert_array_equal(np.asarray(probabilities, np.float32), expected.probabilities)
    assert [p.prediction for p in got] == [int(x) for x in expected.labels]  # type: ignore[union-attr]
    status = setup.agent.status()
    assert status["active_version"] == setup.version.id
    assert status["active_sha256"] == setup.bundle.sha256
    assert status["last_error"] is None
    assert not status["stale"]


def test_new_version_switches_and_keeps_the_previous(setup: Setup) -> None:
    setup.agent.sync()
    newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
    setup.repo.publish(NAME, newer)
    assert setup.agent.sync().version == "v-next"
    status = setup.agent.status()
    assert status["active_version"] == "v-next"
    assert status["previous_version"] == setup.version.id
    assert len(list((setup.agent.home / "versions").iterdir())) == 2


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.update({"bundle.json": break_golden(m["bundle.json"])}), "self-test failed"),
        (lambda m: m.update({"model.onnx": m["model.onnx"][:-50]}), "sha256"),
        (lambda m: m.update({"extra.txt": b"x"}), "not allowed"),
        (lambda m: m.update({"../model.onnx": m["model.onnx"]}), "not allowed"),
        (lambda m: m.pop("bundle.json"), "lacks"),
        (lambda m: m.update({"bundle.json": b"{not json"}), "not valid JSON"),
        (lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "../../escape")}), "not a version name"),
    ],
    ids=[
        "golden-mismatch",
        "truncated-model",
        "extra-member",
        "path-traversal",
        "no-manifest",
        "bad-manifest",
        "version-is-a-path",
    ],
)
def test_signed_but_bad_bundles_never_switch_in(
    setup: Setup, change: Callable[[dict[str, bytes]], None], problem: str
) -> None:
    setup.agent.sync()
    setup.repo.publish(NAME, retar(setup.bundle.data, change))
    with pytest.raises(BundleRejected, match=problem):
        setup.agent.sync()
    assert setup.agent.active().version == setup.version.id  # the old model keeps answering
    assert setup.agent.active().predict(setup.rows(3))
    assert problem.split()[0] in setup.agent.status()["last_error"] or "rejected" in setup.agent.status()["last_error"]
    with pytest.raises(BundleRejected, match="rejected before"):  # not downloaded and tried again and again
        setup.agent.sync()


def test_unpack_refuses_links_and_directories(tmp_path: Path) -> None:
    for kind in (tarfile.SYMTYPE, tarfile.DIRTYPE, tarfile.LNKTYPE):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo("model.onnx")
            info.type = kind
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        with pytest.raises(BundleRejected, match="not allowed"):
            unpack(out.getvalue(), tmp_path / f"d{kind!r}")
        assert not (tmp_path / f"d{kind!r}").exists()


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01 << (offset % 8)
    path.write_bytes(bytes(data))


def tamper_variants(new_blob: Path, old_blob: Path) -> list[tuple[str, Callable[[Path], None]]]:
    """More than 100 ways to tamper with the newest published state; each edits a copy of the repository."""
    newest = [Path("metadata/timestamp.json"), Path("metadata/3.snapshot.json"), Path("metadata/3.targets.json")]
    variants: list[tuple[str, Callable[[Path], None]]] = []
    for rel in [*newest, new_blob]:
        for k in range(24):
            variants.append((f"flip {rel} #{k}", lambda r, rel=rel, k=k: _flip(r / rel, k * 7919 + k)))
        variants.append((f"truncate {rel}", lambda r, rel=rel: (r / rel).write_bytes((r / rel).read_bytes()[:-17])))
        variants.append((f"empty {rel}", lambda r, rel=rel: (r / rel).write_bytes(b"")))
    variants.append(("swap target", lambda r: shutil.copy(r / old_blob, r / new_blob)))
    variants.append(("grow target", lambda r: (r / new_blob).write_bytes((r / new_blob).read_bytes() + bytes(1 << 20))))

    def drop_signatures(r: Path, rel: Path = newest[2]) -> None:
        md = json.loads((r / rel).read_text())
        md["signatures"] = []
        (r / rel).write_text(json.dumps(md))

    def wrong_key(r: Path, rel: Path = newest[2]) -> None:
        from securesystemslib.signer import CryptoSigner
        from tuf.api.metadata import Metadata

        md = Metadata.from_bytes((r / rel).read_bytes())
        md.signatures.clear()
        md.sign(CryptoSigner.generate_ed25519())
        (r / rel).write_bytes(md.to_bytes())

    variants += [("drop signatures", drop_signatures), ("wrong key", wrong_key)]
    return variants


def test_tampered_repositories_install_nothing(setup: Setup, tmp_path: Path, serve_dir: Callable[[Path], str]) -> None:
    setup.agent.sync()
    newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
    setup.repo.publish(NAME, newer)
    blobs = {p.name.split(".")[0]: p.relative_to(setup.repo_dir) for p in (setup.repo_dir / "targets").rglob("*.tar")}
    variants = tamper_variants(blobs[publisher_bundle.sha256_bytes(newer)], blobs[setup.bundle.sha256])
    assert len(variants) >= 100
    copies = tmp_path / "copies"
    copies.mkdir()
    host = serve_dir(copies)  # one static host serves every tampered copy under /t<i>/
    installed = []
    for i, (name, tamper) in enumerate(variants):
        repo = copies / f"t{i}"
        shutil.copytree(setup.repo_dir, repo)
        tamper(repo)
        home = tmp_path / "homes" / f"h{i}"
        shutil.copytree(setup.agent.home, home, symlinks=True)
        config = json.loads((home / "config.json").read_text())
        config["repo_url"] = f"{host}/t{i}"
        (home / "config.json").write_text(json.dumps(config))
        agent = Agent(home)
        try:
            agent.sync()
            installed.append(name)
        except (SyncError, BundleRejected):
            pass
        assert agent.active().version == setup.version.id, name  # the old model keeps answering
        assert [d.name for d in (home / "versions").iterdir() if "v-next" in d.name] == [], name
        shutil.rmtree(repo)
        shutil.rmtree(home)
    assert installed == []


def test_replayed_old_metadata_is_refused_even_after_a_restart(setup: Setup) -> None:
    old_timestamp = (setup.repo_dir / "metadata" / "timestamp.json").read_bytes()
    setup.agent.sync()
    newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
    setup.repo.publish(NAME, newer)
    assert setup.agent.sync().version == "v-next"
    (setup.repo_dir / "metadata" / "timestamp.json").write_bytes(old_timestamp)  # rollback attack
    for agent in (setup.agent, Agent(setup.agent.home)):  # the same device, and after a restart
        with pytest.raises(SyncError, match="did not verify"):
            agent.sync()
        assert agent.active().version == "v-next"


def test_expired_timestamp_is_refused_and_reported_stale(
    tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]
) -> None:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    setup.agent.sync()
    from datetime import timedelta

    frozen = TufRepository(
        str(setup.repo_dir), KeyStore(tmp_path / "keys"), expiry={"timestamp": timedelta(seconds=-1)}
    )
    frozen.refresh_timestamp()
    with pytest.raises(SyncError, match="Expired"):
        setup.agent.sync()
    status = setup.agent.status()
    assert status["stale"] is True
    assert "Expired" in status["last_error"]
    assert status["active_version"] == setup.version.id


def test_a_device_reports_stale_once_its_timestamp_expires_even_between_syncs(
    tmp_path: Path, churn_champion: dict[str, str], serve_dir: Callable[[Path], str]
) -> None:
    """A repository frozen at a timestamp that is still valid cannot be told from a quiet one; once that timestamp
    expires the device says stale (status, and so its heartbeats), without waiting for a sync; a re-signed
    timestamp makes it fresh again."""
    import time
    from datetime import UTC, datetime, timedelta

    from ferry_edge.telemetry import DriftSketch, Heartbeats

    setup = Setup(tmp_path, churn_champion, serve_dir)
    short = TufRepository(str(setup.repo_dir), KeyStore(tmp_path / "keys"), expiry={"timestamp": timedelta(seconds=2)})
    short.refresh_timestamp()
    setup.agent.sync()
    status = setup.agent.status()
    assert status["stale"] is False
    expires = datetime.fromisoformat(status["metadata_expires"])
    assert expires > datetime.now(UTC)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)  # the repository stays frozen
    status = setup.agent.status()
    assert status["stale"] is True
    beat = Heartbeats(tmp_path / "beats", "http://unused").build(status, DriftSketch([]))
    assert beat["health"]["stale"] is True
    setup.repo.refresh_timestamp()  # the edge-resign flow runs again
    setup.agent.sync()
    assert setup.agent.status()["stale"] is False


def test_runtime_crashes_roll_back_and_the_count_survives_restarts(setup: Setup) -> None:
    setup.agent.sync()
    newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
    setup.repo.publish(NAME, newer)
    setup.agent.sync()
    assert not setup.agent.record_crash()
    assert not Agent(setup.agent.home).record_crash()  # a restart keeps the count
    assert Agent(setup.agent.home).record_crash()  # third crash: roll back
    assert setup.agent.active().version == setup.version.id
    with pytest.raises(BundleRejected, match="rejected before"):  # and the crashing bundle is not reinstalled
        setup.agent.sync()


def test_inputs_are_checked_against_the_bundle_schema(setup: Setup) -> None:
    setup.agent.sync()
    model = setup.agent.active()
    good = setup.rows(1)[0]
    with pytest.raises(InputError, match=r"'tenure_months'.*expected a number"):
        model.predict([{**good, "tenure_months": "twelve"}])
    with pytest.raises(InputError, match=r"'plan'.*not one of"):
        model.predict([{**good, "plan": "platinum"}])
    with pytest.raises(InputError, match=r"'contract'.*missing"):
        model.predict([{k: v for k, v in good.items() if k != "contract"}])
    with pytest.raises(InputError, match=r"'support_calls'.*null"):
        model.predict([{**good, "support_calls": None}])


def test_no_model_before_the_first_sync(setup: Setup) -> None:
    with pytest.raises(NoModel):
        setup.agent.active()


def test_cli_predicts_offline_and_the_agent_imports_no_heavy_library(setup: Setup, tmp_path: Path) -> None:
    setup.agent.sync()
    rows = setup.rows(5)
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    out, heavy = edge_alone(setup.agent.home, "predict", str(jsonl))
    assert heavy == []
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == 5
    assert all(line["version"] == setup.version.id for line in lines)
    expected = setup.agent.active().predict(rows)
    assert lines == [p.to_dict() for p in expected]
    assert all(set(line["probabilities"]) == {"0", "1"} for line in lines)


def test_publisher_and_agent_agree_on_target_names() -> None:
    assert tufrepo.target_name("churn", "edge/beta") == target_name("churn", "edge/beta")


def _fake_model(manifest: dict[str, Any], *, columns: int, fill: float) -> bytes:
    """An ONNX model with the bundle's inputs whose probabilities are ``fill`` in ``columns`` columns."""
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info(
            f["name"], TensorProto.FLOAT if f["type"] == "numeric" else TensorProto.STRING, [None, 1]
        )
        for f in manifest["schema"]["features"]
    ]
    x = next(f["name"] for f in manifest["schema"]["features"] if f["type"] == "numeric")
    nodes = [
        helper.make_node("Constant", [], ["fill"], value=helper.make_tensor("fill", TensorProto.FLOAT, [], [fill])),
        helper.make_node("Mul", [x, "fill"], ["col0"]),
        helper.make_node("Add", ["col0", "fill"], ["col"]),
        helper.make_node("Sub", ["col", "col"], ["zero"]),
        helper.make_node("Add", ["zero", "fill"], ["filled"]),
        helper.make_node("Concat", ["filled"] * columns, ["probabilities"], axis=1),
        helper.make_node("Greater", [x, x], ["gt"]),
        helper.make_node("Cast", ["gt"], ["label2d"], to=TensorProto.INT64),
        helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("axes", TensorProto.INT64, [1], [1])),
        helper.make_node("Squeeze", ["label2d", "axes"], ["label"]),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, columns]),
    ]
    graph = helper.make_graph(nodes, "fake", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@pytest.mark.parametrize(
    ("columns", "fill", "problem"),
    [(2, float("nan"), "NaN"), (3, 0.3, "shapes")],
    ids=["nan-output", "wrong-shape"],
)
def test_models_that_misbehave_fail_the_self_test(setup: Setup, columns: int, fill: float, problem: str) -> None:
    setup.agent.sync()

    def swap_model(members: dict[str, bytes]) -> None:
        import hashlib

        manifest = json.loads(members["bundle.json"])
        members["model.onnx"] = _fake_model(manifest, columns=columns, fill=fill)
        manifest["model_sha256"] = hashlib.sha256(members["model.onnx"]).hexdigest()
        manifest["version"] = "v-broken"
        members["bundle.json"] = json.dumps(manifest).encode()

    setup.repo.publish(NAME, retar(setup.bundle.data, swap_model))
    with pytest.raises(BundleRejected, match=problem):
        setup.agent.sync()
    assert setup.agent.active().version == setup.version.id


def test_a_model_over_the_latency_budget_is_retried_then_rejected(setup: Setup) -> None:
    """Latency depends on the device's load at the moment: a missed budget is retried, a bounded number of times."""
    config = json.loads((setup.agent.home / "config.json").read_text())
    config.update(budget_ms=1e-6, selftest_backoff_s=0, selftest_attempts=3)
    (setup.agent.home / "config.json").write_text(json.dumps(config))
    for attempt in (1, 2):
        with pytest.raises(SelfTestIncomplete, match=f"latency.*attempt {attempt} of 3"):
            setup.agent.sync()
    with pytest.raises(BundleRejected, match=r"did not complete in 3 attempts.*latency"):
        setup.agent.sync()
    with pytest.raises(BundleRejected, match="rejected before"):
        setup.agent.sync()
    with pytest.raises(NoModel):
        setup.agent.active()


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("selftest_attempts", 0, r"0 is outside \[1, 100\]"),
        ("sketch_min_count", "20", "expected an integer"),
        ("selftest_backoff_s", True, "expected a number"),
        ("budget_ms", 0, r"0 is outside \(0, 60000\]"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(setup: Setup, setting: str, value: Any, reason: str) -> None:
    path = setup.agent.home / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), setting: value}))
    with pytest.raises(ConfigError, match=rf"setting {setting!r}: {reason}"):
        setup.agent.sync()
    assert not (setup.agent.home / "state.json").exists()  # nothing was attempted, nothing half-written


def test_an_unreadable_state_file_is_named_with_what_to_do(setup: Setup) -> None:
    setup.agent.sync()
    (setup.agent.home / "state.json").write_text('{"torn')
    done = subprocess.run(
        [sys.executable, "-m", "ferry_edge.cli", "--home", str(setup.agent.home), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "state.json is not a JSON object" in done.stderr
    assert "move it aside" in done.stderr
    assert "Traceback" not in done.stderr
