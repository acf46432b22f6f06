"""``ferry edge`` commands against a real registry and TUF repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ferry.cli_edge import edge_app
from ferry.registry import Registry


def test_publish_status_resign_rotate(
    churn_champion: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(churn_champion["registry"], tmp_path / "registry")
    monkeypatch.setenv("FERRY_REGISTRY_URL", str(tmp_path / "registry"))
    monkeypatch.setenv("FERRY_EDGE_REPO_URL", str(tmp_path / "repo"))
    monkeypatch.setenv("FERRY_EDGE_KEYS_DIR", str(tmp_path / "keys"))
    runner = CliRunner()

    def edge(*args: str) -> tuple[int, str]:
        result = runner.invoke(edge_app, list(args), env={"COLUMNS": "200"})
        return result.exit_code, result.output

    code, out = edge("publish", "--model", "churn")
    assert code == 2
    assert "no edge channel" in out
    Registry(str(tmp_path / "registry")).promote(churn_champion["version"], "edge/beta", model="churn", reason="t")
    code, out = edge("publish", "--model", "churn")
    assert code == 0, out
    assert "published" in out
    code, out = edge("publish", "--model", "churn", "--channel", "edge/beta")
    assert "already published" in out
    code, out = edge("status")
    assert code == 0
    assert "churn/edge-beta/bundle.tar" in out
    assert churn_champion["version"] in out
    code, out = edge("resign")
    assert code == 0
    assert "v3" in out
    code, out = edge("rotate", "--role", "targets")
    assert code == 0
    assert "root is now v2" in out
    code, out = edge("rotate", "--role", "nobody")
    assert code == 2
    assert "not one of" in out


def test_thresholds_from_the_environment_and_rotating_a_second_key(
    churn_champion: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(churn_champion["registry"], tmp_path / "registry")
    monkeypatch.setenv("FERRY_REGISTRY_URL", str(tmp_path / "registry"))
    monkeypatch.setenv("FERRY_EDGE_REPO_URL", str(tmp_path / "repo"))
    monkeypatch.setenv("FERRY_EDGE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("FERRY_EDGE_THRESHOLDS", '{"root": 2, "targets": 2}')
    Registry(str(tmp_path / "registry")).promote(churn_champion["version"], "edge/beta", model="churn", reason="t")
    runner = CliRunner()

    def edge(*args: str) -> tuple[int, str]:
        result = runner.invoke(edge_app, list(args), env={"COLUMNS": "200"})
        return result.exit_code, result.output

    assert edge("publish", "--model", "churn")[0] == 0
    code, out = edge("status")
    assert code == 0
    assert "root 2 of 2, targets 2 of 2, snapshot 1 of 1, timestamp 1 of 1" in out
    code, out = edge("rotate", "--role", "targets", "--slot", "2")
    assert code == 0, out
    assert (tmp_path / "keys" / "targets-2.pem.old").exists()
    code, out = edge("rotate", "--role", "targets", "--slot", "3")
    assert code == 2
    assert "targets-3.pem" in out
    monkeypatch.setenv("FERRY_EDGE_THRESHOLDS", '{"targetz": 2}')
    code, out = edge("status")
    assert code == 2
    assert "'targetz' is not a TUF role" in out
