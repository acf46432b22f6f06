"""Helpers shared by test modules (importable as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

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
    core.evaluate_candidate(run)
    core.export_onnx(run)
    core.check_parity(run, gate)
    result = core.run_gate(run, registry, gate)
    core.write_lineage(run)
    version = core.register_candidate(run, registry)
    moved = core.promote_if_passed(registry, version, list(channels), reason="test")
    return version, result.to_dict(), moved
