"""Explanations on the device: a bundle carries its version's ``explain.npz``, and the agent's attributions for a
row are the registry explainer's, bit for bit, for every task; a bundle without the file, a bad ``top_k`` or class,
and a tampered file are each refused with one line that says why."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_support import NAME, Setup, edge, edge_alone, retar, with_version
from ferry_edge.bundle import unpack
from ferry_edge.errors import BundleRejected, InputError, NotExplainable, SyncError
from ferry_edge.model import EdgeModel
from ferry_edge.selftest import check

from ferry.cli.parity import records as json_rows
from ferry.cli.processes import StaticHost
from ferry.data import read_table
from ferry.errors import BundleError
from ferry.explain import EXPLAIN_FILE, ExplainFile, load_explainer
from ferry.explain import records as explained_records
from ferry.online.records import Served, prepare
from ferry.publish.bundle import build_bundle
from ferry.registry import Registry
from ferry.schema import Schema

pytestmark = pytest.mark.integration  # the session's trained models, and a device synced over HTTP

ROWS = 4


@pytest.fixture(scope="module")
def device(churn_champion: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """A device that synced the churn champion's bundle from a real static host (stopped once it has)."""
    hosts: list[StaticHost] = []

    def serve(directory: Path) -> str:
        hosts.append(StaticHost(directory).start())
        return hosts[-1].url

    try:
        setup = Setup(tmp_path_factory.mktemp("explain-device"), churn_champion, serve)
        setup.agent.sync()
    finally:
        for host in hosts:
            host.stop()
    return setup


@pytest.fixture(scope="module")
def models(
    device: Setup, task_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[EdgeModel, Registry, str, str]]:
    """task -> (the device's model, its registry, version id, data file): churn synced over HTTP, the others
    unpacked from their bundles."""
    out = {"binary": (device.agent.active(), device.registry, device.version.id, device.data)}
    root = tmp_path_factory.mktemp("explain-bundles")
    registry = task_models["registry"]
    for task, name in (("multiclass", "defects"), ("regression", "demand")):
        version = task_models[name]["version"]
        unpack(build_bundle(registry, version).data, root / name)
        out[task] = (EdgeModel(root / name), registry, version.id, str(task_models[name]["data"]))
    return out


def _rows(model: EdgeModel, data: str, n: int = ROWS) -> list[dict[str, Any]]:
    return json_rows(read_table(data).head(n), Schema.from_dict(model.manifest["schema"]))


def _expected(registry: Registry, version: str, rows: list[dict[str, Any]], **ask: Any) -> list[dict[str, Any]]:
    """What the registry's explainer answers for these JSON rows, checked as ``/predict`` checks them."""
    explainer = load_explainer(registry, version)
    return explained_records(explainer.explain(prepare(rows, Served.of(explainer.schema)), **ask))


def _arrays(found: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.array([list(r["attributions"].values()) for r in found], dtype=np.float64)
    return values, np.array([r["base_value"] for r in found]), np.array([r["value"] for r in found])


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_device_explains_exactly_what_the_registry_explains(
    models: dict[str, tuple[EdgeModel, Registry, str, str]], task: str
) -> None:
    model, registry, version, data = models[task]
    rows = _rows(model, data)
    asks: list[dict[str, Any]] = [{"top_k": 3}]
    if task != "regression":
        asks.append({"top_k": 2, "target": model.classes[-1]})
    for ask in asks:
        device = model.explain(rows, **ask)
        expected = _expected(registry, version, rows, **ask)
        values, base, value = _arrays(device)
        want_values, want_base, want_value = _arrays(expected)
        np.testing.assert_array_equal(values, want_values)
        np.testing.assert_array_equal(base, want_base)
        np.testing.assert_array_equal(value, want_value)
        assert device == expected  # and every other key: class, top, standard errors, exact
        assert all(len(r["top"]) == ask["top_k"] for r in device)
        # they add up: prediction minus base value, to float32 precision
        scale = np.maximum(1.0, np.abs(value))
        assert (np.abs(values.sum(axis=1) - (value - base)) <= 4 * np.finfo(np.float32).eps * scale).all()
    # one row alone gets the numbers it gets among others
    assert model.explain(rows[2:3], top_k=3) == model.explain(rows, top_k=3)[2:3]
    if task == "regression":
        assert {r["class"] for r in device} == {None}
    else:
        assert {r["class"] for r in device} == {model.classes[-1]}
    assert all((r["standard_errors"] is None) is r["exact"] for r in device)
    if task == "binary":  # churn's 15 features: a sampled plan, its standard errors reported
        assert not device[0]["exact"]
        assert all(set(r["standard_errors"]) == set(r["attributions"]) for r in device)


def test_the_bundle_carries_the_versions_explain_file_listed_and_hashed(device: Setup) -> None:
    with tarfile.open(fileobj=io.BytesIO(device.bundle.data)) as tar:
        assert tar.getnames() == ["bundle.json", "model.onnx", EXPLAIN_FILE]
        carried = tar.extractfile(EXPLAIN_FILE).read()  # type: ignore[union-attr]
    assert carried == device.registry.read_bytes(device.version, EXPLAIN_FILE)
    installed = device.agent.active().directory
    assert (installed / EXPLAIN_FILE).read_bytes() == carried
    assert device.bundle.manifest["explain_sha256"] == hashlib.sha256(carried).hexdigest()


@pytest.mark.parametrize(
    ("ask", "field", "reason"),
    [
        ({"top_k": 0}, "top_k", "from 1 to 15"),
        ({"top_k": 16}, "top_k", "from 1 to 15"),
        ({"top_k": 2.5}, "top_k", "whole number"),
        ({"top_k": True}, "top_k", "whole number"),
        ({"target": "maybe"}, "class", "not one of the model's classes"),
        ({"target": 2}, "class", "not one of the model's classes"),
    ],
)
def test_a_bad_top_k_or_class_is_refused_naming_it(
    models: dict[str, tuple[EdgeModel, Registry, str, str]], ask: dict[str, Any], field: str, reason: str
) -> None:
    model, *_ = models["binary"]
    with pytest.raises(InputError, match=reason) as caught:
        model.explain([], **ask)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


def test_a_regressor_explains_its_value_and_refuses_a_class(
    models: dict[str, tuple[EdgeModel, Registry, str, str]],
) -> None:
    model, *_ = models["regression"]
    with pytest.raises(InputError, match="regression model explains its value") as caught:
        model.explain([], target="high")
    assert caught.value.field == "class"


def test_a_bad_row_is_refused_naming_the_field_as_predict_does(
    models: dict[str, tuple[EdgeModel, Registry, str, str]],
) -> None:
    model, _, _, data = models["binary"]
    rows = _rows(model, data, 2)
    name = model.features[0]["name"]
    del rows[1][name]
    with pytest.raises(InputError, match=f"row 1: field '{name}': required field is missing"):
        model.explain(rows)


def test_the_cli_explains_offline_without_heavy_imports(device: Setup, tmp_path: Path) -> None:
    model = device.agent.active()
    rows = _rows(model, device.data)
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    done, heavy = edge_alone(device.agent.home, "explain", str(jsonl), "--top-k", "4", "--class", "1")
    assert heavy == []
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert printed == _expected(device.registry, device.version.id, rows, top_k=4, target=1)
    assert {r["class"] for r in printed} == {1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top-k", "0"], "field 'top_k': must be a whole number from 1 to 15"),
        (["--top-k", "many"], "field 'top_k': must be a whole number, got 'many'"),
        (["--class", "maybe"], "field 'class': 'maybe' is not one of the model's classes"),
    ],
)
def test_the_cli_refuses_a_bad_top_k_or_class_in_one_line(
    device: Setup, tmp_path: Path, args: list[str], message: str
) -> None:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(json.dumps(_rows(device.agent.active(), device.data, 1)[0]))
    done = edge(device.agent.home, "explain", str(jsonl), *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr


def _reordered(registry: Registry, version: str) -> bytes:
    """The version's explain.npz with its features in another order than the schema's."""
    stored = ExplainFile.from_bytes(registry.read_bytes(registry.get(version), EXPLAIN_FILE))
    return ExplainFile(stored.plan, stored.features[::-1], stored.background).to_bytes()


def _variant(registry: Registry, version: str, work: Path, *, explain_file: bytes | None) -> str:
    """A new version of the same model with another ``explain.npz``, or none (as versions made before it were)."""
    base = registry.get(version)
    work.mkdir(parents=True)
    files = {}
    for name in base.files:
        data = registry.read_bytes(base, name)
        if name == EXPLAIN_FILE:
            if explain_file is None:
                continue
            data = explain_file
        if name == "lineage.json":
            data = json.dumps({**json.loads(data), "note": f"{work.name}"}).encode()
        (work / name).write_bytes(data)
        files[name] = work / name
    return registry.register(base.model, files, dict(base.info)).id


def test_a_version_without_explain_file_publishes_and_the_device_says_to_re_register(
    setup: Setup, tmp_path: Path
) -> None:
    registry = Registry(str(tmp_path / "registry"))
    shutil.copytree(setup.registry.url, tmp_path / "registry", dirs_exist_ok=True)
    old = registry.get(_variant(registry, setup.version.id, tmp_path / "old", explain_file=None))
    bundle = build_bundle(registry, old)
    assert "explain_sha256" not in bundle.manifest
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as tar:
        assert tar.getnames() == ["bundle.json", "model.onnx"]
    setup.repo.publish(NAME, bundle.data, custom={"version": old.id})
    assert setup.agent.sync().version == old.id
    model = setup.agent.active()
    assert not model.explainable
    assert model.predict(setup.rows(2))  # it still predicts
    with pytest.raises(NotExplainable, match=f"version {old.id} cannot be explained.*re-register"):
        model.explain(setup.rows(2))
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(setup.rows(1)[0], default=float))
    done = edge(setup.agent.home, "explain", str(rows))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert old.id in done.stderr
    assert "re-register" in done.stderr


@pytest.mark.parametrize(
    ("explain_file", "problem"),
    [
        (b"not an npz", "explain.npz: not a ferry explanation file"),
        (_reordered, "explain.npz covers the features"),
    ],
    ids=["not-npz", "other-features"],
)
def test_a_version_whose_explain_file_is_broken_has_no_bundle(
    churn_champion: dict[str, str], tmp_path: Path, explain_file: Any, problem: str
) -> None:
    shutil.copytree(churn_champion["registry"], tmp_path / "registry")
    registry = Registry(str(tmp_path / "registry"))
    data = explain_file if isinstance(explain_file, bytes) else explain_file(registry, churn_champion["version"])
    version = registry.get(_variant(registry, churn_champion["version"], tmp_path / "broken", explain_file=data))
    with pytest.raises(BundleError, match=f"edge bundle of churn/{version.id} cannot be built: {problem}"):
        build_bundle(registry, version)


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def _unlist(raw: bytes) -> bytes:
    manifest = json.loads(raw)
    del manifest["explain_sha256"]
    return json.dumps(manifest).encode()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.update({EXPLAIN_FILE: _flip_last_byte(m[EXPLAIN_FILE])}), "explain.npz does not match the sha256"),
        (lambda m: m.pop(EXPLAIN_FILE), "lacks 'explain.npz', which bundle.json lists"),
        (lambda m: m.update({"bundle.json": _unlist(m["bundle.json"])}), "'explain.npz' is not listed in bundle.json"),
    ],
    ids=["changed", "missing", "unlisted"],
)
def test_a_bundle_whose_explain_file_is_not_the_listed_one_is_refused(
    device: Setup, tmp_path: Path, change: Callable[[dict[str, bytes]], None], problem: str
) -> None:
    edited = retar(device.bundle.data, change)
    with pytest.raises(BundleRejected, match=problem):
        unpack(edited, tmp_path / "v")
    assert not (tmp_path / "v").exists()
    assert set(_members(device.bundle.data)) == {"bundle.json", "model.onnx", EXPLAIN_FILE}


def test_an_explain_file_tampered_in_the_repository_is_refused_by_tuf(setup: Setup) -> None:
    setup.agent.sync()
    newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
    setup.repo.publish(NAME, newer)
    sha = hashlib.sha256(newer).hexdigest()
    (blob,) = (setup.repo_dir / "targets").rglob(f"{sha}.*")
    with tarfile.open(fileobj=io.BytesIO(newer)) as tar:
        offset = tar.getmember(EXPLAIN_FILE).offset_data
    data = bytearray(blob.read_bytes())
    data[offset + 100] ^= 0x01  # one bit of the background sample, the length unchanged
    blob.write_bytes(bytes(data))
    with pytest.raises(SyncError) as caught:
        setup.agent.sync()
    assert caught.value.kind == "unverified"
    assert setup.agent.active().version == setup.version.id  # the old model keeps answering and explaining
    assert setup.agent.active().explain(setup.rows(1), top_k=1)


def test_reading_a_background_keeps_text_as_the_model_takes_it(models: dict[str, Any]) -> None:
    model, *_ = models["binary"]
    stored = model.explain_file()
    kinds = {f["name"]: f["type"] for f in model.features}
    for name, column in stored.background.items():
        assert column.shape[1] == 1
        assert column.dtype == (np.float32 if kinds[name] == "numeric" else object), name
    assert stored.exact is False


def _edit_explain_file(path: Path, **changes: Any) -> None:
    with np.load(path, allow_pickle=False) as arrays:
        contents = {k: arrays[k] for k in arrays.files}
    contents.update(changes)
    out = io.BytesIO()
    np.savez(out, **contents)
    path.write_bytes(out.getvalue())


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda c: {"weights": c["weights"] * 2}, "attributions of golden row 0 add up to"),
        (lambda c: {"features": c["features"][::-1]}, "explain.npz covers the features"),
        (lambda c: {"masks": c["masks"][:, :-1]}, "does not fit"),
    ],
    ids=["weights-that-do-not-add-up", "features-reordered", "plan-of-other-features"],
)
def test_the_self_test_explains_a_golden_row_and_fails_a_wrong_explain_file(
    models: dict[str, tuple[EdgeModel, Registry, str, str]],
    tmp_path: Path,
    change: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    problem: str,
) -> None:
    directory = tmp_path / "installed"
    shutil.copytree(models["binary"][0].directory, directory)
    assert check(directory, budget_ms=10_000)["ok"]
    path = directory / EXPLAIN_FILE
    with np.load(path, allow_pickle=False) as arrays:
        _edit_explain_file(path, **change({k: arrays[k] for k in ("weights", "features", "masks")}))
    report = check(directory, budget_ms=10_000)
    assert report["outcome"] == "failed"
    assert any(problem in p for p in report["problems"]), report
