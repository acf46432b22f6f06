"""The ``monitor`` flow: drift of what production produced since the last run, per source and edge cohort.

Each run leaves artifacts (a drift table per source, links to the Evidently reports, the drift history) and emits a
``ferry.drift.detected`` event for each drift worth announcing (see :class:`ferry.monitor.Policy`). The event's
resource carries ``ferry.retrain`` ("true" or "false"); the retrain deployment's trigger in ``prefect.yaml`` runs
on the "true" ones only, so dedupe and cooldown are decided once, here.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from ferry import monitor as core
from ferry import status
from ferry.monitor import rollout
from ferry.monitor.rollout import RolloutSettings
from ferry.publish import publish_moved
from ferry.registry import Registry
from ferry.settings import StorageSettings
from ferry.train.summary import as_link

EVENT = "ferry.drift.detected"


def _key(model: str, *parts: str) -> str:
    return "-".join([model, *parts]).replace("_", "-").replace("/", "-").replace(":", "-").lower()


@task(name="judge-source")
def judge_source(
    registry_url: str, model: str, version_id: str, source: core.SourceData, settings: core.MonitorSettings, run: str
) -> dict[str, Any]:
    """Evidently drift (and quality, with labels) of one source; its HTML report is kept in the registry."""
    registry = Registry(registry_url)
    reference, schema = core.reference_of(registry, registry.get(version_id, model=model))
    with tempfile.TemporaryDirectory(prefix="ferry-monitor-") as tmp:
        judgement = core.judge(source, reference, schema, settings, report_dir=Path(tmp), run=run)
        out = judgement.to_dict()
        if judgement.report is not None:
            out["report"] = core.keep_report(registry, model, Path(judgement.report))
    if judgement.input is not None:
        out["columns"] = [
            {
                "feature": c.feature,
                "method": c.method,
                "score": c.score,
                "threshold": c.threshold,
                "drifted": c.drifted,
            }
            for c in judgement.input.columns
        ]
    get_run_logger().info(
        "%s: %d rows, %s",
        source.source,
        source.rows,
        out["skipped"] or f"drifted share {out['drifted_share']:.2f}, drifted={out['drifted']}",
    )
    return out


@task(name="rollout")
def rollout_step(registry_url: str, model: str, settings: RolloutSettings) -> dict[str, Any]:
    """Judge the challenger once its window has elapsed; promote or roll it back, and publish moved edge channels."""
    registry = Registry(registry_url)
    evidence = rollout.assess(registry, model, settings)
    moved = rollout.apply(registry, evidence)
    log = get_run_logger()
    for rec in moved:
        log.warning("%s of %s: %s -> %s (%s)", rec.channel, model, rec.from_version, rec.to_version, evidence.decision)
    publish_moved(registry, model, [rec.channel for rec in moved])
    if evidence.decision in ("wait", "none"):
        log.info("rollout: %s (%s)", evidence.decision, "; ".join(evidence.reasons))
    return {**evidence.to_dict(), "moved": [{"channel": r.channel, "to": r.to_version} for r in moved]}


@flow(name="monitor", description="Drift of production inputs and predictions against the champion's reference.")
def monitor(
    model: str = "churn",
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

    ``telemetry_folder``: a folder collector of edge heartbeats, read besides the registry's own telemetry.
    ``labels_url``: a file of ground truth (``prediction_id``, ``label``), joined like the labels sent to the
    service's ``/feedback`` with the predictions logged in the last ``label_lookback_days``: each version's quality.
    ``online_url``: the online service, asked what it serves for the "what runs where" artifact (with the key in
    ``FERRY_STATUS_API_KEY``). Then the staged rollout: a challenger whose window has elapsed is promoted or rolled back
    (:mod:`ferry.monitor.rollout`).
    """
    log = get_run_logger()
    settings = settings or core.MonitorSettings()
    registry_url = registry_url or StorageSettings().registry_url
    registry = Registry(registry_url)
    version_id = registry.channel(model, channel)
    if version_id is None:
        log.warning("%s of %s points nowhere: nothing to compare against", channel, model)
        return {"model": model, "judgements": [], "announcements": []}
    schema = core.reference_of(registry, registry.get(version_id, model=model))[1]
    state = core.MonitorState.load(registry, model)
    now = datetime.now(UTC)
    run = now.strftime("%Y%m%dT%H%M%S")

    sources: list[core.SourceData] = []
    online = core.online_since(registry, model, state.cursors.get("online"), max_rows=settings.max_rows)
    feedback, feedback_cursor = core.feedback_since(registry, model, state.cursors.get("feedback"))
    if feedback_cursor:
        state.cursors["feedback"] = feedback_cursor
    if online is not None:
        sources.append(online)
    batch = core.batch_since(registry, model, state.cursors.get("batch"), max_rows=settings.max_rows)
    if batch is not None:
        sources.append(batch)
    edge, devices, edge_cursor = core.edge_since(registry, model, schema, state.cursors.get("edge"))
    sources += edge
    if telemetry_folder:
        more, more_devices, folder_cursor = core.edge_since(
            registry, model, schema, state.cursors.get("edge-folder"), folder=telemetry_folder
        )
        sources, devices = _merge_cohorts(sources, more, schema), devices + more_devices
        if folder_cursor:
            state.cursors["edge-folder"] = folder_cursor
    if edge_cursor:
        state.cursors["edge"] = edge_cursor
    if devices:
        status.remember_devices(registry, model, devices)

    judged = [judge_source(registry_url, model, version_id, s, settings, run) for s in sources]
    quality = _quality(registry, model, schema, feedback, labels_url, settings)
    verdicts = [core.Seen(j["source"], j["drifted"], j["fingerprint"]) for j in judged]
    announcements = core.Policy(settings).decide(state, verdicts, now)
    for s in sources:
        if s.cursor is not None:
            state.cursors[s.source] = s.cursor
    by_source = {j["source"]: j for j in judged}
    for a in announcements:
        j = by_source[a.source]
        if not a.announce:
            log.info("%s: %s; not announced again", a.source, a.why)
            continue
        emit_event(
            event=EVENT,
            resource={
                "prefect.resource.id": f"ferry.model.{model}",
                "prefect.resource.name": model,
                "ferry.model": model,
                "ferry.channel": channel,
                "ferry.source": a.source,
                "ferry.retrain": "true" if a.retrain else "false",
            },
            payload={
                "model": model,
                "channel": channel,
                "version": version_id,
                "source": a.source,
                "drifted_share": j["drifted_share"],
                "drifted_features": j["drifted_features"],
                "prediction_drift": j["prediction_drift"],
                "report": j["report"],
                "retrain": a.retrain,
                "why": a.why,
                "summary": f"{a.source}: {', '.join(j['drifted_features']) or 'predictions'} drifted",
            },
        )
        log.warning("drift announced on %s (retrain requested: %s): %s", a.source, a.retrain, a.why)
    entries = [
        {
            "at": now.isoformat(timespec="seconds"),
            "version": version_id,
            **{k: v for k, v in j.items() if k != "columns"},
        }
        | {"announced": any(a.source == j["source"] and a.announce for a in announcements)}
        for j in judged
    ]
    core.append_history(registry, model, entries)
    state.save(registry, model)
    outcome: dict[str, Any] = {
        "model": model,
        "version": version_id,
        "judgements": judged,
        "announcements": [a.__dict__ for a in announcements],
        "devices": devices,
        "quality": quality,
    }
    outcome["rollout"] = rollout_step(registry_url, model, rollout_settings or RolloutSettings())
    view = status.collect(registry, model, online_url=online_url, api_key=os.environ.get("FERRY_STATUS_API_KEY"))
    outcome["skew"] = view.skew
    create_markdown_artifact(status.to_markdown(view), key=_key(model, "whereabouts"), description="What runs where")
    _artifacts(registry, outcome)
    return outcome


def _quality(
    registry: Registry,
    model: str,
    schema: Any,
    feedback: Any,
    labels_url: str | None,
    settings: core.MonitorSettings,
) -> dict[str, dict[str, float]]:
    """Each version's quality on the labels that arrived (feedback since the last run, and a labels file)."""
    import pandas as pd

    parts = [feedback] if feedback is not None else []
    if labels_url:
        parts.append(core.read_labels(labels_url))
    labels = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if labels.empty:
        return {}
    logged = core.logged_since(registry, model, settings.label_lookback_days)
    quality = core.quality_by_version(logged, labels, str(schema.target_classes[-1]))
    for version, q in quality.items():
        get_run_logger().info("quality of %s on %d labelled predictions: %s", version, int(q["labelled"]), q)
    return quality


def _merge_cohorts(sources: list[core.SourceData], more: list[core.SourceData], schema: Any) -> list[core.SourceData]:
    """Sources from a folder collector join the registry's: same cohort name, rows side by side."""
    import pandas as pd

    by = {s.source: s for s in sources}
    for s in more:
        old = by.get(s.source)
        if old is None:
            by[s.source] = s
            continue
        versions = dict(old.versions)
        for k, v in s.versions.items():
            versions[k] = versions.get(k, 0) + v
        frame = pd.concat([old.frame, s.frame], ignore_index=True)
        by[s.source] = core.SourceData(s.source, frame, old.rows + s.rows, versions, None)
    return list(by.values())


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
        create_table_artifact(rows, key=_key(model, "drift"), description=f"Drift against {outcome.get('version')}")
    for j in outcome["judgements"]:
        if j.get("columns"):
            create_table_artifact(
                j["columns"], key=_key(model, "drift", j["source"]), description=f"Drift per feature: {j['source']}"
            )
        if j.get("report"):
            create_link_artifact(
                as_link(j["report"]),
                link_text=f"Evidently drift report: {j['source']}",
                key=_key(model, "drift-report", j["source"]),
            )
    if outcome.get("quality"):
        create_table_artifact(
            [{"version": v, **{k: round(x, 4) for k, x in q.items()}} for v, q in outcome["quality"].items()],
            key=_key(model, "quality"),
            description="Quality on labelled live predictions (feedback and labels files)",
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
