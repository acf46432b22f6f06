"""Staged rollout: a candidate first serves as ``online/challenger`` (shadow, canary or A/B, as the service's routing
says) and on ``edge/beta``. After an observation window, :func:`assess` compares it with the champion on the live
traffic both answered in that window, and :func:`apply` makes it champion (and ``edge/stable``) or rolls it back.
Either way the decision and its evidence are recorded: the evidence as ``monitor/rollouts/<time>-<version>.json``
in the registry, the decision as an audit record whose reason names that file.

The decision, in order:

1. wait while the window has not elapsed, or either side answered fewer than ``min_rows`` requests in it;
2. once each side answered ``min_latency_requests`` requests, a challenger whose median latency per request (its
   own time to check and score it, logged with every prediction) is more than ``max_latency_ratio`` times the
   champion's is rolled back, whatever its quality (fewer requests make too noisy a median to act on);
3. with at least ``min_labels`` labelled answers on each side (labels sent to ``/feedback``), the challenger is
   promoted when it is no worse than the champion on the task's primary metric, in its direction, else rolled
   back:

   | task | primary metric | no worse means |
   |---|---|---|
   | binary | ROC AUC | at least the champion's less ``tolerance`` |
   | multiclass | the gate's ``multiclass_primary_metric`` (macro F1 by default) | within ``tolerance`` of it |
   | regression | the gate's ``regression_primary_metric`` (RMSE by default) | ≤ its × (1 + ``regression_tolerance``) |

   (log loss, RMSE and MAE: lower is better.) The gate and the rollout judge a task on the same metric.

4. without labels, a classifier whose answers are all one class (a regressor whose answers are all one value) is
   rolled back; otherwise it is promoted, since it passed the gate and served the window without a signal
   against it.

Prediction drift between the two (Evidently, over the task's answers: :func:`ferry.monitor.judging.prediction_drift`),
each side's share of answers per class (``positive_rate`` too for a binary model) or the mean and spread of its
values, and its latency percentiles are part of the evidence either way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ferry import storage
from ferry.monitor.answers import CLASS, VALUE
from ferry.monitor.judging import prediction_drift
from ferry.monitor.quality import check_labels, label_metrics
from ferry.monitor.sources import online_logs_since
from ferry.registry import Registry, layout
from ferry.registry.audit import AuditRecord
from ferry.registry.release import release
from ferry.schema import Schema
from ferry.settings import GateSettings
from ferry.train.metrics import LOWER_IS_BETTER

__all__ = ["Evidence", "RolloutSettings", "apply", "assess"]

Decision = Literal["wait", "promote", "rollback", "none"]


class RolloutSettings(BaseSettings):
    """When a challenger is judged, and how."""

    model_config = SettingsConfigDict(env_prefix="FERRY_ROLLOUT_", extra="ignore")

    window_hours: float = Field(default=24.0, ge=0, description="How long a challenger serves before it is judged.")
    min_rows: int = Field(default=500, ge=1, description="Answers each side needs in the window to be compared.")
    min_labels: int = Field(default=200, ge=1, description="Labelled answers each side needs to compare quality.")
    tolerance: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Binary and multiclass: how much worse on the primary metric the challenger may be (absolute).",
    )
    regression_tolerance: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Regression: how much higher than the champion's RMSE/MAE the challenger's may be, as a share.",
    )
    max_latency_ratio: float = Field(
        default=2.0, ge=1, description="How many times the champion's median latency the challenger's may be."
    )
    min_latency_requests: int = Field(
        default=100, ge=1, description="Requests each side needs before their latencies are compared."
    )


@dataclass
class Evidence:
    model: str
    champion: str | None
    challenger: str | None
    since: str | None
    decided_at: str
    decision: Decision
    reasons: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    positive_rate: dict[str, float] = field(default_factory=dict)
    class_share: dict[str, dict[str, float]] = field(default_factory=dict)
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    prediction_drift: dict[str, Any] | None = None
    location: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_NAMES = {"roc_auc": "ROC AUC", "macro_f1": "macro F1", "accuracy": "accuracy", "log_loss": "log loss"}
_NAMES |= {"roc_auc_ovr": "one-vs-rest ROC AUC"}
_NAMES |= {"rmse": "RMSE", "mae": "MAE"}


def _quality(answers: pd.DataFrame, labels: pd.DataFrame, schema: Schema) -> dict[str, float] | None:
    if labels.empty or answers.empty:
        return None
    joined = answers.merge(labels[["prediction_id", "label"]], on="prediction_id", how="inner")
    return label_metrics(joined, schema) if len(joined) else {"labelled": 0.0}


def _describe(evidence: Evidence, name: str, part: pd.DataFrame, schema: Schema) -> None:
    """A side's answers in brief: the share of each class (and the positive rate), or the values' mean and spread."""
    if schema.kind == "regression":
        if VALUE not in part.columns:
            return
        v = pd.to_numeric(part[VALUE], errors="coerce").dropna()
        if len(v):
            evidence.values[name] = {"mean": float(v.mean()), "std": float(v.std(ddof=0)), "min": float(v.min())}
            evidence.values[name]["max"] = float(v.max())
        return
    if CLASS not in part.columns:
        return
    shares = part[CLASS].astype(str).value_counts(normalize=True)
    evidence.class_share[name] = {str(c): float(shares.get(str(c), 0.0)) for c in schema.target_classes}
    if schema.kind == "binary":
        evidence.positive_rate[name] = evidence.class_share[name][str(schema.target_classes[-1])]


def _primary(schema: Schema, gate: GateSettings) -> str:
    if schema.kind == "binary":
        return "roc_auc"
    return gate.multiclass_primary_metric if schema.kind == "multiclass" else gate.regression_primary_metric


def _by_quality(evidence: Evidence, schema: Schema, s: RolloutSettings, gate: GateSettings) -> bool:
    """Decide on the primary metric of labelled live traffic, in its direction; False when labels are too few."""
    metric = _primary(schema, gate)
    labelled = {n: int(evidence.quality.get(n, {}).get("labelled", 0)) for n in ("champion", "challenger")}
    found = {n: evidence.quality.get(n, {}).get(metric) for n in ("champion", "challenger")}
    if min(labelled.values()) < s.min_labels or None in found.values():
        return False
    champ, chall = float(found["champion"]), float(found["challenger"])  # type: ignore[arg-type]
    if schema.kind == "regression":
        bar, allowed = champ * (1 + s.regression_tolerance), f"{s.regression_tolerance:g} of it"
    else:
        bar, allowed = (champ + s.tolerance if metric == "log_loss" else champ - s.tolerance), f"{s.tolerance:g}"
    lower = metric in LOWER_IS_BETTER
    name = _NAMES[metric]
    if (chall <= bar) if lower else (chall >= bar):
        evidence.decision = "promote"
        evidence.reasons.append(f"{name} on labelled live traffic {chall:.4f} vs champion {champ:.4f}")
    else:
        evidence.decision = "rollback"
        side = "above" if lower else "below"
        evidence.reasons.append(
            f"{name} on labelled live traffic {chall:.4f} is {side} the champion's {champ:.4f} by more than {allowed}"
        )
    return True


def _one_answer(evidence: Evidence, schema: Schema) -> str | None:
    """Why the challenger's answers say nothing (all one class, or all one value); None when they vary."""
    if schema.kind == "regression":
        spread = evidence.values.get("challenger")
        if spread is not None and spread["max"] == spread["min"]:
            return f"every challenger answer was the same value ({spread['min']:g})"
        return None
    shares = evidence.class_share.get("challenger", {})
    if not shares or max(shares.values()) < 1.0:
        return None
    only = max(shares, key=lambda c: shares[c])
    if schema.kind == "binary":
        return f"every challenger answer was the same class (positive rate {evidence.positive_rate['challenger']:.0%})"
    return f"every challenger answer was the same class ({only!r})"


def _latency(answers: pd.DataFrame) -> dict[str, float] | None:
    """p50/p99 of the logged latency per request (rows of one request share it); None when the logs predate it."""
    if "latency_ms" not in answers.columns:
        return None
    timed = answers.assign(latency_ms=pd.to_numeric(answers["latency_ms"], errors="coerce")).dropna(
        subset=["latency_ms"]
    )
    if timed.empty:
        return None
    key = ["request"] if "request" in timed.columns else ["ts", "latency_ms"]
    ms = timed.drop_duplicates(subset=key)["latency_ms"]
    return {
        "p50": round(float(ms.quantile(0.5)), 4),
        "p99": round(float(ms.quantile(0.99)), 4),
        "requests": float(len(ms)),
    }


def assess(
    registry: Registry,
    model: str,
    settings: RolloutSettings | None = None,
    *,
    now: datetime | None = None,
    champion_channel: str = "online/champion",
    challenger_channel: str = "online/challenger",
    gate: GateSettings | None = None,
) -> Evidence:
    """Compare the challenger with the champion on the traffic since the challenger's channel last moved (``gate``:
    whose primary metric per task decides on labels; default from the environment)."""
    s = settings or RolloutSettings()
    now = now or datetime.now(UTC)
    stamp = now.isoformat(timespec="seconds")
    channels = registry.channels(model)
    champion = channels[champion_channel].version if champion_channel in channels else None
    challenger = channels[challenger_channel].version if challenger_channel in channels else None
    if champion is None or challenger is None or challenger == champion:
        return Evidence(model, champion, challenger, None, stamp, "none", ["no challenger different from the champion"])
    since = datetime.fromisoformat(channels[challenger_channel].moved_at)
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    evidence = Evidence(model, champion, challenger, since.isoformat(timespec="seconds"), stamp, "wait")
    if now - since < timedelta(hours=s.window_hours):
        evidence.reasons.append(f"the {s.window_hours:g} h window since {evidence.since} has not elapsed")
        return evidence
    logs = online_logs_since(registry, model, "predictions", since)
    schema = registry.schema(registry.get(champion, model=model))
    feedback = online_logs_since(registry, model, "feedback", since)
    labels = check_labels(feedback, schema, "feedback", drop=True) if not feedback.empty else feedback
    sides = {}
    for name, vid in (("champion", champion), ("challenger", challenger)):
        part = logs[logs["version"] == vid] if not logs.empty else logs
        if name == "champion" and "role" in part.columns:
            part = part[part["role"] != "shadow"]
        sides[name] = part
        evidence.rows[name] = len(part)
        if len(part):
            _describe(evidence, name, part, schema)
        q = _quality(part, labels, schema)
        if q is not None:
            evidence.quality[name] = q
        took = _latency(part)
        if took is not None:
            evidence.latency_ms[name] = took
    short = [n for n in ("champion", "challenger") if evidence.rows[n] < s.min_rows]
    if short:
        evidence.reasons.append(
            f"{' and '.join(short)} answered fewer than min_rows={s.min_rows} requests since {evidence.since} "
            f"({', '.join(f'{k} {v}' for k, v in evidence.rows.items())})"
            + (
                "; no prediction was logged at all: the service logs none unless FERRY_ONLINE_PREDICTION_SAMPLE_RATE "
                "is above 0"
                if not any(evidence.rows.values())
                else ""
            )
        )
        return evidence
    drift = prediction_drift(sides["champion"], sides["challenger"], schema)
    evidence.prediction_drift = drift.to_dict() if drift is not None else None
    timed = [evidence.latency_ms[n] for n in ("champion", "challenger") if n in evidence.latency_ms]
    if len(timed) == 2 and min(t["requests"] for t in timed) >= s.min_latency_requests:
        champ_ms, chall_ms = timed[0]["p50"], timed[1]["p50"]
        if chall_ms > champ_ms * s.max_latency_ratio:
            evidence.decision = "rollback"
            evidence.reasons.append(
                f"median latency {chall_ms:.3f} ms is more than max_latency_ratio={s.max_latency_ratio:g} times the "
                f"champion's {champ_ms:.3f} ms"
            )
            return evidence
    if _by_quality(evidence, schema, s, gate or GateSettings()):
        return evidence
    same = _one_answer(evidence, schema)
    if same is not None:
        evidence.decision = "rollback"
        evidence.reasons.append(same)
    else:
        labelled = {n: int(evidence.quality.get(n, {}).get("labelled", 0)) for n in ("champion", "challenger")}
        evidence.decision = "promote"
        evidence.reasons.append(
            f"no labels to compare (champion {labelled['champion']}, challenger {labelled['challenger']} of "
            f"min_labels={s.min_labels}); {evidence.rows['challenger']} answers in the window without a signal "
            f"against it"
        )
    return evidence


def apply(
    registry: Registry,
    evidence: Evidence,
    *,
    champion_channel: str = "online/champion",
    challenger_channel: str = "online/challenger",
    edge_beta: str = "edge/beta",
    edge_stable: str = "edge/stable",
) -> list[AuditRecord]:
    """Record the evidence and move the channels the decision calls for; returns the audit records written.

    Promote: the challenger becomes champion, and ``edge/stable`` follows when ``edge/beta`` runs the challenger,
    as one release (one audit record: both move or neither).
    Rollback: ``online/challenger`` points at the champion again, and ``edge/beta`` back at ``edge/stable``'s
    version. Wait or none: nothing moves.
    """
    if evidence.decision not in ("promote", "rollback"):
        return []
    if evidence.champion is None or evidence.challenger is None:
        raise ValueError("a promote or rollback decision needs both a champion and a challenger")
    fs, root = registry.open_store()
    name = f"{evidence.decided_at.replace(':', '').replace('-', '')[:15]}-{evidence.challenger}.json"
    path = layout.monitor_path(root, evidence.model, "rollouts", name)
    evidence.location = path if storage.is_local(fs) else fs.unstrip_protocol(path)
    storage.atomic_write_bytes(fs, path, json.dumps(evidence.to_dict(), indent=2, default=str).encode())
    why = f"rollout {evidence.decision}: {'; '.join(evidence.reasons)} (evidence {evidence.location})"
    channels = registry.channels(evidence.model)
    records = []
    if evidence.decision == "promote":
        targets = [champion_channel]
        if edge_beta in channels and channels[edge_beta].version == evidence.challenger:
            targets.append(edge_stable)
        records.append(release(registry, evidence.challenger, targets, model=evidence.model, reason=why).record)
    else:
        records.append(registry.promote(evidence.champion, challenger_channel, model=evidence.model, reason=why))
        stable = channels.get(edge_stable)
        if edge_beta in channels and channels[edge_beta].version == evidence.challenger and stable is not None:
            records.append(registry.promote(stable.version, edge_beta, model=evidence.model, reason=why))
    return records
