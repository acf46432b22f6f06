"""The shared champion fixture is what it says."""

from __future__ import annotations

from ferry.registry import Registry


def test_churn_champion_is_promoted_and_intact(churn_champion: dict[str, str]) -> None:
    registry = Registry(churn_champion["registry"])
    assert registry.channel("churn", "online/champion") == churn_champion["version"]
    assert registry.verify_version(registry.get(churn_champion["version"])) == []
