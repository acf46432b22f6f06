"""Publishing edge channels from the registry into the TUF repository, then syncing them on a device."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from ferry_edge.agent import Agent

from ferry.errors import ChannelError
from ferry.publish import open_repository, publish_channel, publish_moved, target_name
from ferry.registry import Registry
from ferry.settings import EdgeSettings


@pytest.mark.integration
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


def test_publish_moved_publishes_edge_channels_only(churn_champion: dict[str, str], tmp_path: Path) -> None:
    import subprocess
    import sys

    shutil.copytree(churn_champion["registry"], tmp_path / "registry")
    registry = Registry(str(tmp_path / "registry"))
    repo = open_repository(EdgeSettings(repo_url=str(tmp_path / "repo"), keys_dir=str(tmp_path / "keys")))
    assert publish_moved(registry, "churn", ["online/champion", "batch"], repo=repo) == []
    assert repo.root_version() == 0  # nothing was written for channels devices do not follow
    registry.promote(churn_champion["version"], "edge/beta", model="churn", reason="beta")
    (result,) = publish_moved(registry, "churn", ["online/champion", "edge/beta"], repo=repo)
    assert result.changed
    assert result.target == target_name("churn", "edge/beta")
    # moving a channel that is not an edge one loads nothing of python-tuf
    code = (
        "import sys; from ferry.publish import publish_moved; "
        "assert publish_moved(None, 'churn', ['online/champion']) == []; "
        "print(','.join(m for m in sys.modules if m == 'tuf' or m.startswith('tuf.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
