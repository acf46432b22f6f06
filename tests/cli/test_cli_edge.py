"""``ferry edge`` commands against a real registry and TUF repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import clone_version
from typer.testing import CliRunner

from ferry.cli.edge import edge_app
from ferry.registry import Registry


def edge_env(churn_champion: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the champion's registry and an empty edge repository and key directory, set in the environment."""
    shutil.copytree(churn_champion["registry"], tmp_path / "registry")
    monkeypatch.setenv("FERRY_REGISTRY_URL", str(tmp_path / "registry"))
    monkeypatch.setenv("FERRY_EDGE_REPO_URL", str(tmp_path / "repo"))
    monkeypatch.setenv("FERRY_EDGE_KEYS_DIR", str(tmp_path / "keys"))
    return tmp_path / "registry"


def two_versions(
    churn_champion: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Registry, str, str]:
    """:func:`edge_env` plus a second version of the champion's model (same model, another lineage)."""
    registry_dir = edge_env(churn_champion, tmp_path, monkeypatch)
    first = churn_champion["version"]
    reg = Registry(str(registry_dir))
    return reg, first, clone_version(reg, reg.get(first), tmp_path / "clone", note="second")


def ferry(*args: str) -> tuple[int, str]:
    """``ferry ARGS`` in this process: its exit code and output."""
    from ferry.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def published() -> str:
    """The version of the bundle ``edge/stable`` of ``churn`` is published at."""
    from ferry.publish import open_repository
    from ferry.publish.tufrepo import describe

    return str(describe(open_repository())["targets"]["churn/edge-stable/bundle.tar"]["version"])


def test_publish_status_resign_rotate(
    churn_champion: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edge_env(churn_champion, tmp_path, monkeypatch)
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
    edge_env(churn_champion, tmp_path, monkeypatch)
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


def test_promote_and_rollback_on_an_edge_channel_publish_the_bundle(
    churn_champion: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, first, second = two_versions(churn_champion, tmp_path, monkeypatch)

    code, out = ferry("promote", first, "--channel", "edge/stable", "--reason", "field release")
    assert code == 0, out
    assert "edge/stable: published churn/edge-stable/bundle.tar" in out
    assert published() == first
    assert ferry("promote", second, "-c", "edge/stable", "-r", "next release")[0] == 0
    assert published() == second
    code, out = ferry("rollback", "--channel", "edge/stable", "--reason", "bad field reports")
    assert code == 0, out
    assert published() == first
    code, out = ferry("promote", second, "-c", "edge/stable", "-r", "again", "--no-publish")
    assert code == 0
    assert "published" not in out
    assert published() == first  # moved, but not published: devices keep the old bundle
    code, out = ferry("promote", second, "-c", "online/champion", "-r", "online only")
    assert code == 0
    assert "published" not in out


def test_release_moves_online_and_edge_together_and_publishes(
    churn_champion: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, first, second = two_versions(churn_champion, tmp_path, monkeypatch)

    code, out = ferry("release", first, "--to", "online/champion,edge/stable", "--reason", "again")
    assert code == 2
    assert "'online/champion' of 'churn' already points to" in out
    assert reg.channel("churn", "edge/stable") is None  # all or nothing
    assert ferry("promote", first, "--channel", "edge/stable", "--reason", "winter")[0] == 0
    n = len(reg.audit("churn"))
    code, out = ferry("release", second, "--to", "online/champion,edge/stable", "--reason", "spring")
    assert code == 0, out
    assert "edge/stable: published churn/edge-stable/bundle.tar" in out
    assert [r.action for r in reg.audit("churn")[n:]] == ["release"]  # one audit record for both channels
    assert f"audit record {n + 1}" in out
    rid = reg.audit("churn")[-1].reason.split(":")[0].removeprefix("release ")
    code, out = ferry("status")
    assert code == 0, out
    assert out.count(f"release {rid} (#{n + 1})") == 2  # both channels, moved by the one release
    assert reg.channel("churn", "online/champion") == reg.channel("churn", "edge/stable") == second
    assert published() == second
    code, out = ferry("rollback", "--release", "--reason", "bad spring")
    assert code == 0, out
    assert [r.action for r in reg.audit("churn")[n:]] == ["release", "release-rollback"]
    assert ferry("audit", "verify")[0] == 0
    assert reg.channel("churn", "online/champion") == reg.channel("churn", "edge/stable") == first
    assert published() == first
    code, out = ferry("rollback", "--release", "--channel", "edge/stable")
    assert code == 2
    assert "either --channel CHANNEL or --release" in out
