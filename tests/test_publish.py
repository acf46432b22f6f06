"""Publishing edge channels from the registry into the TUF repository, then syncing them on a device."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from ferry_edge.agent import Agent

from ferry.errors import ChannelError
from ferry.publish import open_repository, publish_channel
from ferry.registry import Registry
from ferry.settings import EdgeSettings


def test_promote_publish_sync(churn_champion: dict[str, str], tmp_path: Path, serve_dir: Callable[[Path], str]) -> None:
    shutil.copytree(churn_champion["registry"], tmp_path / "registry")
    registry = Registry(str(tmp_path / "registry"))
    settings = EdgeSettings(repo_url=str(tmp_path / "repo"), keys_dir=str(tmp_path / "keys"))
    repo = open_repository(settings)
    with pytest.raises(ChannelError, match="points nowhere"):
        publish_channel(registry, repo, "churn", "edge/stable")
    with pytest.raises(ChannelError, match="not an edge channel"):
        publish_channel(registry, repo, "churn", "online/champion")
    registry.promote(churn_champion["version"], "edge/stable", model="churn", reason="first edge release")
    first = publish_channel(registry, repo, "churn", "edge/stable")
    assert first.changed
    assert not publish_channel(registry, repo, "churn", "edge/stable").changed  # idempotent
    url = serve_dir(tmp_path / "repo")
    agent = Agent.init(
        tmp_path / "device", repo_url=url, model="churn", channel="edge/stable", trusted_root=repo.trusted_root()
    )
    assert agent.sync().version == churn_champion["version"]
    assert agent.status()["active_sha256"] == first.sha256
