"""A version whose edge bundle cannot be built is refused before any channel moves, on every way a channel is moved
to a version (the retrain's promotion, ``ferry promote``, ``ferry release``, ``ferry rollback``); a bundle builds for
every task."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import clone_version
from typer.testing import CliRunner

from ferry.cli import app
from ferry.errors import BundleError
from ferry.publish import check_publishable
from ferry.publish.bundle import build_bundle
from ferry.registry import Registry
from ferry.train.steps import promote_if_passed


@pytest.fixture
def broken(task_models: dict[str, Any], tmp_path: Path) -> tuple[Registry, str]:
    """A copy of the task models' registry with a demand version whose model.onnx is the defects model's (it cannot
    score its own schema's golden rows), its gate passed."""
    shutil.copytree(task_models["root"] / "reg", tmp_path / "reg")
    registry = Registry(str(tmp_path / "reg"))
    demand = registry.get(task_models["demand"]["version"].id, model="demand")
    defects = registry.get(task_models["defects"]["version"].id, model="defects")
    vid = clone_version(
        registry, demand, tmp_path / "clone", note="wrong model", onnx=registry.read_bytes(defects, "model.onnx")
    )
    return registry, vid


def _state(registry: Registry) -> tuple[Any, int]:
    return registry.channels("demand"), len(registry.audit("demand"))


def test_every_task_builds_a_bundle_with_its_golden_outputs(task_models: dict[str, Any]) -> None:
    registry = task_models["registry"]
    defects = build_bundle(registry, task_models["defects"]["version"]).manifest
    assert defects["task"] == "multiclass"
    assert len(defects["golden"]["probabilities"][0]) == 4
    assert len(defects["golden"]["labels"]) == len(defects["golden"]["rows"]) > 0
    demand = build_bundle(registry, task_models["demand"]["version"]).manifest
    assert demand["task"] == "regression"
    assert 0 < demand["interval"]["coverage"] < 1
    golden = demand["golden"]
    assert all(lo < v < hi for v, lo, hi in zip(golden["value"], golden["lower"], golden["upper"], strict=True))
    check_publishable(registry, task_models["demand"]["version"].id, ["online/champion", "edge/stable"])


def test_the_retrain_promotion_refuses_before_any_channel_moves(broken: tuple[Registry, str]) -> None:
    registry, vid = broken
    before = _state(registry)
    with pytest.raises(BundleError, match=rf"edge/stable not moved: the edge bundle of demand/{vid} cannot be built"):
        promote_if_passed(registry, registry.get(vid, model="demand"), ["online/champion", "edge/stable"], reason="t")
    assert _state(registry) == before
    # Without an edge channel, there is no bundle to build and nothing to refuse.
    assert promote_if_passed(registry, registry.get(vid, model="demand"), ["online/challenger"], reason="t")


@pytest.mark.parametrize("how", ["promote", "release", "rollback"])
def test_the_cli_refuses_before_any_channel_moves(
    broken: tuple[Registry, str], task_models: dict[str, Any], how: str
) -> None:
    registry, vid = broken
    if how == "rollback":  # the broken version was on the channel once (moved by the registry alone)
        registry.promote(vid, "edge/stable", model="demand", reason="moved without a bundle")
        registry.promote(task_models["demand"]["version"].id, "edge/stable", model="demand", reason="then a good one")
    before = _state(registry)
    if how == "promote":
        args = ["promote", vid, "--channel", "edge/stable", "--reason", "try it"]
    elif how == "release":
        args = ["release", vid, "--to", "online/champion,edge/stable", "--reason", "try it", "--model", "demand"]
    else:
        args = ["rollback", "--channel", "edge/stable", "--model", "demand", "--reason", "back"]
    result = CliRunner().invoke(app, [*args, "--registry", registry.url], env={"COLUMNS": "300"})
    assert result.exit_code != 0
    assert "edge/stable not moved" in result.output
    assert "cannot be built" in result.output
    assert _state(registry) == before
