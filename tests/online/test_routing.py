"""Routing between the champion and a challenger: canary split, sticky A/B, shadow that never answers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ferry.online.holder import LoadedModel, ModelHolder
from ferry.online.routing import Router, ab_bucket
from ferry.online.settings import OnlineSettings
from ferry.registry import Registry


@pytest.fixture(scope="module")
def loaded(pair: tuple[Registry, str, str]) -> tuple[LoadedModel, LoadedModel]:
    registry = pair[0]
    champion = ModelHolder(registry, "churn", "online/champion").refresh()
    challenger = ModelHolder(registry, "churn", "online/challenger").refresh()
    assert champion is not None
    assert challenger is not None
    return champion, challenger


def test_canary_split_is_within_tolerance_over_10k_requests(loaded: tuple[LoadedModel, LoadedModel]) -> None:
    champion, challenger = loaded
    router = Router("canary", 10.0, seed=7)
    roles = Counter(router.route(champion, challenger).role for _ in range(10_000))
    # 10% of 10k is 1000 with a standard deviation of 30: 4 sigma either side
    assert 880 <= roles["challenger"] <= 1120, roles


def test_ab_is_sticky_per_key_and_splits_keys(loaded: tuple[LoadedModel, LoadedModel]) -> None:
    champion, challenger = loaded
    router = Router("ab", 30.0)
    keys = [f"customer-{i}" for i in range(5000)]
    first = {k: router.route(champion, challenger, k).answer.id for k in keys}
    again = {k: Router("ab", 30.0).route(champion, challenger, k).answer.id for k in reversed(keys)}
    assert first == again
    share = sum(v == challenger.id for v in first.values()) / len(keys)
    assert 0.27 <= share <= 0.33
    assert router.route(champion, challenger, None).answer is champion
    assert ab_bucket("customer-1") == ab_bucket("customer-1")


def test_shadow_and_champion_modes_always_answer_with_the_champion(loaded: tuple[LoadedModel, LoadedModel]) -> None:
    champion, challenger = loaded
    shadow = Router("shadow", 100.0)
    for _ in range(100):
        route = shadow.route(champion, challenger, "k")
        assert route.answer is champion
        assert route.shadow is challenger
    assert Router("champion", 100.0).route(champion, challenger).answer is champion
    assert Router("canary", 100.0).route(champion, None).answer is champion  # challenger not loaded yet


def test_router_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="mode"):
        Router("random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="percent"):
        Router("canary", 101)


@pytest.mark.parametrize("mode", ["shadow", "canary", "ab"])
def test_the_routing_examples_in_deployments_are_valid_settings(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = Path(__file__).resolve().parents[2] / "deployments" / f"online-{mode}.env"
    names = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert name.startswith("FERRY_ONLINE_"), line
            names.append(name.removeprefix("FERRY_ONLINE_").lower())
            monkeypatch.setenv(name, value)
    settings = OnlineSettings()
    assert settings.routing == mode
    assert set(names) <= set(OnlineSettings.model_fields)  # no misspelt variable is silently ignored
    Router(settings.routing, settings.challenger_percent)
