"""Helpers shared by test modules (importable as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from ferry_edge.telemetry import DriftSketch, Heartbeats

from ferry.cli.parity import records
from ferry.demo_data import churn_schema, make_churn
from ferry.monitor import rollout as rollout
from ferry.online.holder import ModelHolder
from ferry.online.logs import FeedbackLog, PredictionLog
from ferry.online.predict import predict
from ferry.registry import ModelVersion, Registry
from ferry.settings import GateSettings, TrainSettings
from ferry.train import steps as core


def loop(
    data: Path,
    schema: Path,
    registry: Registry,
    work: Path,
    *,
    train: TrainSettings | None = None,
    gate: GateSettings | None = None,
    channels: tuple[str, ...] = ("online/champion",),
) -> tuple[ModelVersion, dict[str, object], list[dict[str, object]]]:
    """Every step in flow order, as the flow runs them."""
    train = train or TrainSettings()
    gate = gate or GateSettings()
    run = core.new_run_dir(work)
    core.ingest(str(data), str(schema), run)
    core.check_data_quality(run, gate)
    core.split_data(run, train)
    core.train_candidate(run, train)
    core.evaluate_candidate(run, train)
    core.export_onnx(run)
    core.check_parity(run, gate)
    result = core.run_gate(run, registry, gate)
    core.explain_candidate(run, registry, gate)
    core.write_lineage(run)
    core.write_model_card(run)
    version = core.register_candidate(run, registry)
    moved = core.promote_if_passed(registry, version, list(channels), reason="test")
    return version, result.to_dict(), moved


def example_maker(example: str) -> Any:
    """The data maker of ``examples/<example>`` (its ``make_csv.py``), loaded under a name of its own so that the
    examples' makers never stand in for one another in ``sys.modules``."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / example / "make_csv.py"
    spec = importlib.util.spec_from_file_location(f"example_{example}_make_csv", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve_rows(
    registry: Registry, rows: list[dict[str, Any]], *, labels: bool = False, model: str = "churn"
) -> list[str]:
    """Score ``rows`` as the online service does and log every prediction (and, optionally, its true label)."""
    holder = ModelHolder(registry, model, "online/champion")
    holder.refresh()
    loaded = holder.current
    assert loaded is not None
    log = PredictionLog(registry.url, model, sample_rate=1.0, buffer_rows=10_000)
    answer = predict(loaded, rows)
    log.record(loaded, rows, answer)
    log.flush()
    ids = [p.prediction_id for p in answer.predictions]
    if labels:
        feedback = FeedbackLog(registry.url, model)
        feedback.record([(i, str(p.prediction)) for i, p in zip(ids, answer.predictions, strict=True)])
        feedback.flush()
    return ids


def beats_from(tmp_path: Path, name: str, frames: list[Any], channel: str, folder: Path) -> None:
    """Real devices' heartbeats (ferry_edge's DriftSketch and Heartbeats) written to a folder collector."""
    schema = churn_schema()
    features = schema.to_dict()["features"]  # with the declared levels, as a device has them from its bundle
    for i, frame in enumerate(frames):
        sketch = DriftSketch(features)
        sketch.update(records(frame, schema))
        beats = Heartbeats(tmp_path / f"{name}-{i}", str(folder))
        status = {"device": f"{name}-{i}", "model": "churn", "channel": channel, "active_version": "v"}
        assert beats.send(beats.build(status, sketch))


def traffic(
    registry: Registry,
    channel: str,
    n: int,
    seed: int,
    *,
    labels: str | None = None,
    latency_ms: float | None = None,
    requests: int = 1,
) -> None:
    """``n`` requests answered by the version behind ``channel``, logged as the service logs them; with ``labels``
        ("right" or "wrong"), each answer's true label comes back through the feedback log; ``latency_ms`` is the time
        the service logs for each answer (None, as in logs written before latency was recorded), the rows split into
    ``requests`` requests."""
    holder = ModelHolder(registry, "churn", channel)
    holder.refresh()
    loaded = holder.current
    assert loaded is not None
    rows = records(make_churn(n, seed=seed), loaded.schema)
    answer = predict(loaded, rows)
    log = PredictionLog(registry.url, "churn", sample_rate=1.0, buffer_rows=100_000)
    size = -(-n // requests)
    for start in range(0, n, size):
        part = answer.model_copy(update={"predictions": answer.predictions[start : start + size]})
        log.record(loaded, rows[start : start + size], part, latency_ms=latency_ms)
    log.flush()
    if labels:
        feedback = FeedbackLog(registry.url, "churn", buffer_rows=100_000)
        flip = {"right": {0: 0, 1: 1}, "wrong": {0: 1, 1: 0}}[labels]
        feedback.record([(p.prediction_id, str(flip[int(p.prediction)])) for p in answer.predictions])
        feedback.flush()


def artifacts_of(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )
            return {a.key: a for a in found}

    return asyncio.run(read())


PRODUCTION_DATA = ("batch", "online", "monitor")
"""What production writes under ``models/<model>/`` (logs, batch samples and runs, monitor state): other tests'
runs leave some in the shared champion registry, so tests that read it start from copies without it."""


def copy_clean(src: str | Path, dst: Path) -> Any:
    """A copy of a registry with its versions and channels but none of the production data other tests wrote."""
    import shutil

    from ferry.registry import Registry

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*PRODUCTION_DATA))
    return Registry(str(dst))


def copy_registry(champion: dict[str, str], dest: Path) -> Registry:
    """A writable copy of the session's champion registry."""
    shutil.copytree(champion["registry"], dest)
    return Registry(str(dest), actor="tester@ferry")


def clone_version(
    registry: Registry,
    base: ModelVersion,
    work: Path,
    *,
    note: str,
    onnx: bytes | None = None,
    replace: dict[str, bytes | None] | None = None,
) -> str:
    """Register a new version of ``base``'s model: same files, a lineage note (so a new id), optionally other ONNX,
    and the files of ``replace`` replaced (None: left out)."""
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    replace = replace or {}
    for name in base.files:
        if name in replace and replace[name] is None:
            continue
        data = replace.get(name) or registry.read_bytes(base, name)
        if name == "lineage.json":
            data = json.dumps({**json.loads(data), "note": note}).encode()
        if name == "model.onnx" and onnx is not None:
            data = onnx
        (work / name).write_bytes(data)
        files[name] = work / name
    return registry.register(base.model, files, dict(base.info)).id


def listening_hosts(pid: int) -> set[str]:
    """The local addresses every TCP socket of a process and its children listens on (network isolation)."""
    import psutil

    root = psutil.Process(pid)
    hosts = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        hosts |= {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
    return hosts


def write_artifacts(directory: Path, tag: str, *, metrics: str = '{"roc_auc": 0.81}') -> dict[str, Path]:
    """Write a small but complete set of version files whose content depends on ``tag``."""
    directory.mkdir(parents=True, exist_ok=True)
    contents = {
        "model.onnx": f"onnx-bytes-{tag}".encode(),
        "schema.json": json.dumps({"name": "churn", "columns": ["a", "b"]}).encode(),
        "lineage.json": json.dumps({"data_sha256": tag}).encode(),
        "metrics.json": metrics.encode(),
        "gate.json": json.dumps({"passed": True, "tag": tag}).encode(),
    }
    files = {}
    for name, data in contents.items():
        (directory / name).write_bytes(data)
        files[name] = directory / name
    return files


def svg_texts(data: bytes) -> list[str]:
    """Parse ``data`` as an SVG document (failing the test when it is not one) and return its texts in order."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    return ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]


def png_size(data: bytes) -> tuple[int, int]:
    """Decode ``data`` as a PNG image (failing the test when it is not one) and return its width and height."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()
        return image.size
