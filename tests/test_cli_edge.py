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
