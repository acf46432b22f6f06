"""Staged rollout: the challenger is judged on the live traffic both versions answered in its window, and promoted
(with edge/stable following edge/beta) or rolled back, the evidence recorded with the audit record."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import traffic

from ferry.monitor import rollout as rollout
from ferry.registry import Registry

SETTINGS = rollout.RolloutSettings(window_hours=1, min_rows=200, min_labels=100)


def later(registry: Registry) -> datetime:
    moved = registry.channels("churn")["online/challenger"].moved_at
    return datetime.fromisoformat(moved) + timedelta(hours=2)


def test_nothing_is_decided_before_the_window_or_without_traffic(staged: tuple[Registry, str, str]) -> None:
    registry, _, _ = staged
    early = rollout.assess(registry, "churn", SETTINGS)
    assert early.decision == "wait"
    assert "window" in early.reasons[0]
    quiet = rollout.assess(registry, "churn", SETTINGS, now=later(registry))
    assert quiet.decision == "wait"
    assert "fewer than min_rows=200" in quiet.reasons[0]
    assert "FERRY_ONLINE_PREDICTION_SAMPLE_RATE" in quiet.reasons[0]  # nothing logged: say what turns logs on
    assert rollout.apply(registry, quiet) == []


def test_a_challenger_as_good_on_labels_becomes_champion_and_edge_stable(staged: tuple[Registry, str, str]) -> None:
    registry, champion, challenger = staged
    traffic(registry, "online/champion", 300, seed=1, labels="right")
    traffic(registry, "online/challenger", 300, seed=2, labels="right")
    evidence = rollout.assess(registry, "churn", SETTINGS, now=later(registry))
    assert evidence.decision == "promote", evidence.reasons
    assert evidence.rows == {"champion": 300, "challenger": 300}
    assert evidence.quality["challenger"]["roc_auc"] == 1.0
    assert evidence.prediction_drift is not None
    records_ = rollout.apply(registry, evidence)
    (record,) = records_  # one release: both channels in one audit record
    assert record.action == "release"
    assert [(m.channel, m.to_version) for m in record.changes] == [
        ("online/champion", challenger),
        ("edge/stable", challenger),
    ]
    assert record.reason.split(": ", 1)[1].startswith("rollout promote: ROC AUC on labelled live traffic")
    assert evidence.location is not None
    saved = json.loads(Path(evidence.location).read_text())
    assert saved["decision"] == "promote"
    assert saved["champion"] == champion
    assert evidence.location in registry.audit("churn")[-1].reason


def test_a_challenger_worse_on_labels_is_rolled_back_online_and_on_edge_beta(
    staged: tuple[Registry, str, str],
) -> None:
    registry, champion, _ = staged
    traffic(registry, "online/champion", 300, seed=3, labels="right")
    traffic(registry, "online/challenger", 300, seed=4, labels="wrong")
    evidence = rollout.assess(registry, "churn", SETTINGS, now=later(registry))
    assert evidence.decision == "rollback"
    assert "below the champion's" in evidence.reasons[0]
    records_ = rollout.apply(registry, evidence)
    assert [(r.channel, r.to_version) for r in records_] == [("online/challenger", champion), ("edge/beta", champion)]
    assert registry.channel("churn", "online/champion") == champion
    assert rollout.assess(registry, "churn", SETTINGS, now=later(registry)).decision == "none"


def test_without_labels_a_challenger_that_served_the_window_is_promoted(staged: tuple[Registry, str, str]) -> None:
    registry, _, challenger = staged
    traffic(registry, "online/champion", 250, seed=5)
    traffic(registry, "online/challenger", 250, seed=6)
    evidence = rollout.assess(registry, "churn", SETTINGS, now=later(registry))
    assert evidence.decision == "promote"
    assert "no labels to compare" in evidence.reasons[0]
    assert 0 < evidence.positive_rate["challenger"] < 1
    rollout.apply(registry, evidence)
    assert registry.channel("churn", "online/champion") == challenger


def test_a_challenger_much_slower_than_the_champion_is_rolled_back_despite_its_labels(
    staged: tuple[Registry, str, str],
) -> None:
    registry, champion, _ = staged
    traffic(registry, "online/champion", 300, seed=7, labels="right", latency_ms=0.5, requests=150)
    traffic(registry, "online/challenger", 300, seed=8, labels="right", latency_ms=1.2, requests=150)
    evidence = rollout.assess(registry, "churn", SETTINGS, now=later(registry))
    assert evidence.decision == "rollback"
    assert evidence.reasons == [
        "median latency 1.200 ms is more than max_latency_ratio=2 times the champion's 0.500 ms"
    ]
    assert evidence.latency_ms["challenger"] == {"p50": 1.2, "p99": 1.2, "requests": 150.0}
    assert evidence.quality["challenger"]["roc_auc"] == 1.0  # as good on labels: latency alone decided
    rollout.apply(registry, evidence)
    assert registry.channel("churn", "online/challenger") == champion


def test_a_challenger_within_the_latency_ratio_is_judged_on_its_labels(staged: tuple[Registry, str, str]) -> None:
    registry, _, challenger = staged
    traffic(registry, "online/champion", 300, seed=9, labels="right", latency_ms=0.5, requests=150)
    traffic(registry, "online/challenger", 300, seed=10, labels="right", latency_ms=0.9, requests=150)
    evidence = rollout.assess(registry, "churn", SETTINGS, now=later(registry))
    assert evidence.decision == "promote", evidence.reasons
    assert evidence.latency_ms["champion"]["p50"] == 0.5
    rollout.apply(registry, evidence)
    assert registry.channel("churn", "online/champion") == challenger


def test_latency_from_too_few_requests_does_not_decide(staged: tuple[Registry, str, str]) -> None:
    """The demo's 8 requests of 250 rows each: a median of 8 is noise on a busy machine, so labels decide."""
    registry, _, challenger = staged
    traffic(registry, "online/champion", 300, seed=11, labels="right", latency_ms=0.5, requests=8)
    traffic(registry, "online/challenger", 300, seed=12, labels="right", latency_ms=5.0, requests=8)
    evidence = rollout.assess(registry, "churn", SETTINGS, now=later(registry))
    assert evidence.latency_ms["challenger"]["requests"] == 8
    assert evidence.decision == "promote", evidence.reasons
    rollout.apply(registry, evidence)
    assert registry.channel("churn", "online/champion") == challenger


def test_bad_settings_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("FERRY_ROLLOUT_TOLERANCE", "2")
    with pytest.raises(ValidationError, match="tolerance"):
        rollout.RolloutSettings()
