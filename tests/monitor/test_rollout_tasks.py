"""Staged rollout per task, on logs written as the online service writes them: the challenger is judged on the
task's primary metric in its direction (macro F1 or log loss; RMSE, lower is better), a classifier that answers one
class (a regressor that answers one value) is rolled back, and prediction drift compares the class or value
distributions of both sides. Schema-only versions: the decision needs only the schema and the logs."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from task_logs import MULTICLASS, REGRESSION, log_answers, schema_only_registry, send_feedback

from ferry.monitor import rollout
from ferry.settings import GateSettings

SETTINGS = rollout.RolloutSettings(window_hours=1, min_rows=150, min_labels=100)
CLASSES = MULTICLASS["target_classes"]


def later(registry: Any, model: str) -> datetime:
    return datetime.fromisoformat(registry.channels(model)["online/challenger"].moved_at) + timedelta(hours=2)


def classes(
    registry: Any, version: str, n: int, *, wrong: float = 0.0, confidence: float = 0.8, only: int | None = None
) -> None:
    """``n`` answers cycling through the classes (or all ``only``), with true labels sent back for each, a share
    ``wrong`` of them the next class."""
    picks = [only if only is not None else i % 3 for i in range(n)]
    rest = (1 - confidence) / 2
    answers = [
        {"label": CLASSES[p], "probabilities": {c: confidence if j == p else rest for j, c in enumerate(CLASSES)}}
        for p in picks
    ]
    ids = log_answers(registry, "parts", version, [{"speed": 1.0}] * n, answers)
    if only is None:
        bad = round(n * wrong)
        truth = [CLASSES[(p + 1) % 3] if i < bad else CLASSES[p] for i, p in enumerate(picks)]
        send_feedback(registry, "parts", list(zip(ids, truth, strict=True)))


def values(registry: Any, version: str, n: int, *, error: float | None, constant: bool = False) -> None:
    """``n`` answers (all 7.0 when ``constant``); with ``error``, true values that far above or below each."""
    vs = [7.0 if constant else 5.0 + i % 10 for i in range(n)]
    answers = [{"value": v, "lower": v - 2, "upper": v + 2} for v in vs]
    ids = log_answers(registry, "stores", version, [{"price": 2.0}] * n, answers)
    if error is not None:
        truth = [v + (error if i % 2 else -error) for i, v in enumerate(vs)]
        send_feedback(registry, "stores", list(zip(ids, truth, strict=True)))


@pytest.mark.parametrize(
    ("metric", "challenger", "decision", "reason"),
    [
        ("macro_f1", {}, "promote", "macro F1 on labelled live traffic 1.0000 vs champion 1.0000"),
        ("macro_f1", {"wrong": 0.3}, "rollback", "macro F1 on labelled live traffic 0.7000 is below the champion's"),
        (
            "log_loss",
            {"confidence": 0.6},
            "rollback",
            "log loss on labelled live traffic 0.5108 is above the champion's",
        ),
    ],
    ids=["f1-as-good", "f1-worse", "log-loss-worse"],
)
def test_a_multiclass_challenger_is_judged_on_its_primary_metric(
    tmp_path: Path, metric: str, challenger: dict[str, Any], decision: str, reason: str
) -> None:
    registry, (champion, candidate) = schema_only_registry(tmp_path, MULTICLASS, notes=["a", "b"])
    classes(registry, champion, 300)
    classes(registry, candidate, 300, **challenger)
    settings = SETTINGS.model_copy(update={"tolerance": 0.02})
    gate = GateSettings(multiclass_primary_metric=metric)
    evidence = rollout.assess(registry, "parts", settings, now=later(registry, "parts"), gate=gate)
    assert evidence.decision == decision, evidence.reasons
    assert evidence.reasons[0].startswith(reason)
    assert evidence.class_share["champion"] == {"none": pytest.approx(1 / 3), "scratch": 1 / 3, "dent": 1 / 3}
    assert evidence.positive_rate == {}  # a binary model's figure only
    assert evidence.prediction_drift is not None
    assert [c["feature"] for c in evidence.prediction_drift["columns"]] == ["prediction"]
    assert not evidence.prediction_drift["drifted"]  # both answered the classes alike


def test_a_multiclass_challenger_that_answers_one_class_is_rolled_back(tmp_path: Path) -> None:
    registry, (champion, candidate) = schema_only_registry(tmp_path, MULTICLASS, notes=["a", "b"])
    classes(registry, champion, 300, only=None)
    classes(registry, candidate, 300, only=2)
    evidence = rollout.assess(registry, "parts", SETTINGS, now=later(registry, "parts"))
    assert evidence.quality["challenger"]["labelled"] == 0  # no labels: the class shares decide
    assert evidence.decision == "rollback"
    assert evidence.reasons == ["every challenger answer was the same class ('dent')"]
    assert evidence.class_share["challenger"] == {"none": 0.0, "scratch": 0.0, "dent": 1.0}
    assert evidence.prediction_drift is not None
    assert evidence.prediction_drift["drifted"]
    records = rollout.apply(registry, evidence)
    assert [(r.channel, r.to_version) for r in records] == [("online/challenger", champion)]


@pytest.mark.parametrize(
    ("metric", "error", "decision", "reason"),
    [
        ("rmse", 1.0, "promote", "RMSE on labelled live traffic 1.0000 vs champion 1.0000"),
        (
            "rmse",
            1.5,
            "rollback",
            "RMSE on labelled live traffic 1.5000 is above the champion's 1.0000 by more than 0.02 of it",
        ),
        ("mae", 1.03, "rollback", "MAE on labelled live traffic 1.0300 is above the champion's"),
    ],
)
def test_a_regression_challenger_is_judged_on_its_error_lower_is_better(
    tmp_path: Path, metric: str, error: float, decision: str, reason: str
) -> None:
    registry, (champion, candidate) = schema_only_registry(tmp_path, REGRESSION, notes=["a", "b"])
    values(registry, champion, 300, error=1.0)
    values(registry, candidate, 300, error=error)
    gate = GateSettings(regression_primary_metric=metric)
    evidence = rollout.assess(registry, "stores", SETTINGS, now=later(registry, "stores"), gate=gate)
    assert evidence.decision == decision, evidence.reasons
    assert evidence.reasons[0].startswith(reason)
    assert evidence.values["champion"] == {"mean": 9.5, "std": pytest.approx(2.8723, abs=1e-4), "min": 5.0, "max": 14.0}
    assert evidence.quality["challenger"]["coverage"] == 1.0
    assert evidence.prediction_drift is not None
    assert [c["feature"] for c in evidence.prediction_drift["columns"]] == ["value"]
    if decision == "promote":
        (record,) = rollout.apply(registry, evidence)
        assert (record.channel, record.to_version) == ("online/champion", candidate)


def test_a_regression_challenger_that_answers_one_value_is_rolled_back(tmp_path: Path) -> None:
    registry, (champion, candidate) = schema_only_registry(tmp_path, REGRESSION, notes=["a", "b"])
    values(registry, champion, 300, error=None)
    values(registry, candidate, 300, error=None, constant=True)
    evidence = rollout.assess(registry, "stores", SETTINGS, now=later(registry, "stores"))
    assert evidence.decision == "rollback"
    assert evidence.reasons == ["every challenger answer was the same value (7)"]
    assert evidence.prediction_drift is not None
    assert evidence.prediction_drift["drifted"]
