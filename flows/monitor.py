"""The ``monitor`` flow: drift of what production produced since the last run, per model, source and edge cohort.

A run covers every model of the registry (or the one it is given). Each run leaves artifacts (a drift table per
source, links to the Evidently reports, the drift history) and emits a ``ferry.drift.detected`` event for each drift
worth announcing (see :class:`ferry.monitor.Policy`). The event's resource carries ``ferry.retrain`` ("true" or
"false"); the retrain deployment's trigger in ``prefect.yaml`` runs on the "true" ones only, so dedupe and cooldown
are decided once, here. The event names its model (resource ``ferry.model.<model>``, payload ``model``) and the time
window of the data it judged (payload ``window``: ``start``, the previous run or the channel's last move, and
``end``), which the automation hands to the retrain.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.events import emit_event

from ferry import monitor as core
from ferry import status
from ferry.monitor import rollout
from ferry.monitor.rollout import RolloutSettings
from ferry.publish import publish_moved
from ferry.registry import Registry
from ferry.settings import StorageSettings
from ferry.train.summary import as_link
from ferry_flows.artifacts import table_artifact

EVENT = "ferry.drift.detected"


def _key(model: str, *parts: str) -> str:
    return "-".join([model, *parts]).replace("_", "-").replace("/", "-").replace(":", "-").lower()


@task(name="gather-sources")
def gather_sources(
    registry_url: str, model: str, version_id: str, settings: core.MonitorSettings, workdir: str, folder: str | None
) -> dict[str, Any]:
    """What every source produced since its cursor, written to files in ``workdir``: references, never rows."""
    registry = Registry(registry_url)
    schema = registry.schema(registry.get(version_id, model=model))
    found = core.gather(registry, model, schema, settings, Path(workdir), telemetry_folder=folder)
    for s in found.sources:
        get_run_logger().info("%s: %d new rows from %s", s.source, s.rows, ", ".join(s.versions) or "no version")
    return found.to_dict()


@task(name="judge-source")
def judge_source(
    registry_url: str, model: str, version_id: str, source: dict[str, Any], settings: core.MonitorSettings, run: str
) -> dict[str, Any]:
    """Evidently drift (and quality, with labels) of one gathered source; its HTML report is kept in the registry."""
    ref = core.SourceRef(**source)
    out = core.judge_source(Registry(registry_url), model, version_id, ref, settings, run)
    get_run_logger().info(
        "%s: %d rows, %s",
        ref.source,
        ref.rows,
        out["skipped"] or f"drifted share {out['drifted_share']:.2f}, drifted={out['drifted']}",
    )
    return out


@task(name="quality")
def quality(
    registry_url: str,
    model: str,
    version_id: str,
    feedback: str | None,
    labels_url: str | None,
    settings: core.MonitorSettings,
) -> dict[str, dict[str, float]]:
    """Each version's quality on the labels that arrived (feedback since the last run, and a labels file), on the
    metrics of its task; a regressor's interval that covered too few labels is logged as a finding."""
    found = core.quality_of_versions(Registry(registry_url), model, version_id, feedback, labels_url, settings)
    log = get_run_logger()
    for version, q in found.items():
        log.info("quality of %s on %d labelled predictions: %s", version, int(q["labelled"]), q)
    for finding in core.coverage_findings(found):
        log.warning("interval coverage: %s", finding)
    return found


@task(name="record")
def record(
    registry_url: str,
    model: str,
    version_id: str,
    gathered: dict[str, Any],
    judged: list[dict[str, Any]],
    settings: core.MonitorSettings,
    now: datetime,
) -> list[dict[str, Any]]:
    """What to announce; the cursors move past what was judged, and the judgements join the history."""
    found = core.Gathered.from_dict(gathered)
    announced = core.record(Registry(registry_url), model, version_id, found, judged, settings, now)
    return [a.__dict__ for a in announced]


@task(name="rollout")
def rollout_step(registry_url: str, model: str, settings: RolloutSettings) -> dict[str, Any]:
    """Judge the challenger once its window has elapsed; promote or roll it back, and publish moved edge channels."""
    registry = Registry(registry_url)
    evidence = rollout.assess(registry, model, settings)
    moved = rollout.apply(registry, evidence)
    log = get_run_logger()
    changes = [m for rec in moved for m in rec.changes]
    for m in changes:
        log.warning("%s of %s: %s -> %s (%s)", m.channel, model, m.from_version, m.to_version, evidence.decision)
    publish_moved(registry, model, [m.channel for m in changes])
    if evidence.decision in ("wait", "none"):
        log.info("rollout: %s (%s)", evidence.decision, "; ".join(evidence.reasons))
    return {**evidence.to_dict(), "moved": [{"channel": m.channel, "to": m.to_version} for m in changes]}


@flow(name="monitor", description="Drift of production inputs and predictions against the champion's reference.")
def monitor(
    model: str | None = None,
    channel: str = "online/champion",
    telemetry_folder: str | None = None,
    registry_url: str | None = None,
    settings: core.MonitorSettings | None = None,
    rollout_settings: RolloutSettings | None = None,
    online_url: str | None = None,
    labels_url: str | None = None,
) -> dict[str, Any]:
    """Judge online predictions, batch inputs and edge heartbeats that arrived since the last run against the
    reference of the version behind ``channel``; announce new drift as ``ferry.drift.detected`` events.

    ``model``: one model; by default every model of the registry, each judged on its own (the result then maps each
    model to its outcome under ``models``).
    ``telemetry_folder``: a folder collector of edge heartbeats, read besides the registry's own telemetry.
    ``labels_url``: a file of ground truth (``prediction_id``, ``label``), joined like the labels sent to the
    service's ``/feedback`` with the predictions logged in the last ``label_lookback_days``: each version's quality.
    ``online_url``: the online service, asked what it serves for the "what runs where" artifact (with the key in
    ``FERRY_STATUS_API_KEY``). Then the staged rollout: a challenger whose window has elapsed is promoted or rolled back
    (:mod:`ferry.monitor.rollout`).
    """
    settings = settings or core.MonitorSettings()
    registry_url = registry_url or StorageSettings().registry_url
    registry = Registry(registry_url)
    names = [model] if model else registry.models()
    outcomes = {
        name: _monitor_model(
            registry, name, channel, telemetry_folder, settings, rollout_settings, online_url, labels_url
        )
        for name in names
    }
    if model:
        return outcomes[model]
    if not names:
        get_run_logger().warning("the registry %s holds no model yet: nothing to monitor", registry_url)
    return {"models": outcomes}


def _window_start(registry: Registry, model: str, channel: str) -> datetime:
    """Where the data this run judged begins: the previous run's time, or when the channel last moved."""
    earlier = core.history(registry, model)
    if earlier:
        return datetime.fromisoformat(earlier[-1]["at"])
    moved = datetime.fromisoformat(registry.channels(model)[channel].moved_at)
    return moved if moved.tzinfo else moved.replace(tzinfo=UTC)


def _monitor_model(
    registry: Registry,
    model: str,
    channel: str,
    telemetry_folder: str | None,
    settings: core.MonitorSettings,
    rollout_settings: RolloutSettings | None,
    online_url: str | None,
    labels_url: str | None,
) -> dict[str, Any]:
    """One model's run of the monitor flow: gather, judge, record, announce, the rollout and the artifacts."""
    log = get_run_logger()
    registry_url = registry.url
    version_id = registry.channel(model, channel)
    if version_id is None:
        log.warning("%s of %s points nowhere: nothing to compare against", channel, model)
        return {"model": model, "judgements": [], "announcements": []}
    now = datetime.now(UTC)
    run = now.strftime("%Y%m%dT%H%M%S")
    window = {"start": _window_start(registry, model, channel).isoformat(), "end": now.isoformat()}
    with tempfile.TemporaryDirectory(prefix="ferry-monitor-") as workdir:
        gathered = gather_sources(registry_url, model, version_id, settings, workdir, telemetry_folder)
        judged = [judge_source(registry_url, model, version_id, s, settings, run) for s in gathered["sources"]]
        found = quality(registry_url, model, version_id, gathered["feedback"], labels_url, settings)
    announcements = record(registry_url, model, version_id, gathered, judged, settings, now)
    by_source = {j["source"]: j for j in judged}
    for a in announcements:
        j = by_source[a["source"]]
        if not a["announce"]:
            log.info("%s: %s; not announced again", a["source"], a["why"])
            continue
        emit_event(
            event=EVENT,
            resource={
                "prefect.resource.id": f"ferry.model.{model}",
                "prefect.resource.name": model,
                "ferry.model": model,
                "ferry.channel": channel,
                "ferry.source": a["source"],
                "ferry.retrain": "true" if a["retrain"] else "false",
            },
            payload={
                "model": model,
                "channel": channel,
                "version": version_id,
                "source": a["source"],
                "drifted_share": j["drifted_share"],
                "drifted_features": j["drifted_features"],
                "prediction_drift": j["prediction_drift"],
                "report": j["report"],
                "retrain": a["retrain"],
                "why": a["why"],
                "window": window,
                "summary": f"{a['source']}: {', '.join(j['drifted_features']) or 'predictions'} drifted",
            },
        )
        log.warning("drift announced on %s (retrain requested: %s): %s", a["source"], a["retrain"], a["why"])
    outcome: dict[str, Any] = {
        "model": model,
        "version": version_id,
        "judgements": judged,
        "announcements": announcements,
        "devices": gathered["devices"],
        "quality": found,
        "findings": core.coverage_findings(found),
    }
    outcome["rollout"] = rollout_step(registry_url, model, rollout_settings or RolloutSettings())
    view = status.collect(registry, model, online_url=online_url, api_key=os.environ.get("FERRY_STATUS_API_KEY"))
    outcome["skew"] = view.skew
    create_markdown_artifact(status.to_markdown(view), key=_key(model, "whereabouts"), description="What runs where")
    _artifacts(registry, outcome)
    return outcome


def _artifacts(registry: Registry, outcome: dict[str, Any]) -> None:
    model = outcome["model"]
    rows = [
        {
            "source": j["source"],
            "rows": j["rows"],
            "drifted": "n/a" if j["skipped"] else str(j["drifted"]),
            "drifted share": "" if j["drifted_share"] is None else f"{j['drifted_share']:.2f}",
            "drifted features": ", ".join(j["drifted_features"]),
            "prediction drift": "n/a" if j["prediction_drift"] is None else str(j["prediction_drift"]),
            "note": j["skipped"] or "",
        }
        for j in outcome["judgements"]
    ]
    if rows:
        table_artifact(rows, key=_key(model, "drift"), description=f"Drift against {outcome.get('version')}")
    for j in outcome["judgements"]:
        if j.get("columns"):
            table_artifact(
                j["columns"], key=_key(model, "drift", j["source"]), description=f"Drift per feature: {j['source']}"
            )
        if j.get("report"):
            create_link_artifact(
                as_link(j["report"]),
                link_text=f"Evidently drift report: {j['source']}",
                key=_key(model, "drift-report", j["source"]),
            )
    if outcome.get("quality"):
        table_artifact(
            [{"version": v, **{k: round(x, 4) for k, x in q.items()}} for v, q in outcome["quality"].items()],
            key=_key(model, "quality"),
            description="Quality on labelled live predictions (feedback and labels files)",
        )
    if outcome.get("findings"):
        create_markdown_artifact(
            "**findings**\n\n" + "\n".join(f"- {f}" for f in outcome["findings"]),
            key=_key(model, "findings"),
            description="What the labels say is wrong (a regressor's interval covering too few)",
        )
    r = outcome.get("rollout") or {}
    if r.get("decision") in ("promote", "rollback", "wait"):
        create_markdown_artifact(
            f"**rollout of {r['challenger']}**: {r['decision']}\n\n"
            + "\n".join(f"- {why}" for why in r["reasons"])
            + "".join(
                f"\n- {side} latency: p50 {ms['p50']:.3f} ms, p99 {ms['p99']:.3f} ms"
                for side, ms in r.get("latency_ms", {}).items()
            )
            + "".join(f"\n- moved `{m['channel']}` to `{m['to']}`" for m in r["moved"])
            + (f"\n\nevidence: {as_link(r['location'])}" if r.get("location") else ""),
            key=_key(model, "rollout"),
            description="Challenger against champion on live traffic",
        )
    recent = core.history(registry, model)[-30:]
    lines = [
        f"# Drift history of {model}",
        "",
        "| at | source | rows | drifted share | drifted | announced |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {h['at']} | {h['source']} | {h['rows']} | "
        f"{'' if h.get('drifted_share') is None else format(h['drifted_share'], '.2f')} | {h['drifted']} | "
        f"{h.get('announced', False)} |"
        for h in recent
    ]
    create_markdown_artifact("\n".join(lines), key=_key(model, "drift-history"), description="The last 30 judgements")
