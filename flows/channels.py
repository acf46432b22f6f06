"""``promote`` and ``rollback``: manual channel moves from the Prefect UI, with typed parameters and the audit log.

Moving an ``edge/...`` channel publishes its bundle in the same run, as ``ferry promote`` does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from ferry.publish import check_publishable
from ferry.registry import Registry
from ferry.registry.audit import AuditRecord
from ferry.settings import StorageSettings
from ferry_flows.edge import publish_moved

Channel = Literal["online/champion", "online/challenger", "batch", "edge/beta", "edge/stable"]


def _record(rec: AuditRecord) -> dict[str, Any]:
    return {
        "seq": rec.seq,
        "model": rec.model,
        "channel": rec.channel,
        "from": rec.from_version,
        "to": rec.to_version,
        "actor": rec.actor,
        "reason": rec.reason,
        "forced": rec.forced,
    }


def _after_move(registry_url: str, rec: AuditRecord, verb: str) -> dict[str, Any]:
    out = _record(rec)
    if published := publish_moved(registry_url, rec.model, [rec.channel]):
        out["published"] = published[0]
    get_run_logger().info("%s %s of %s: %s -> %s", verb, rec.channel, rec.model, rec.from_version, rec.to_version)
    create_markdown_artifact(
        f"**{verb}** `{rec.channel}` of `{rec.model}`: `{rec.from_version}` → `{rec.to_version}`\n\n"
        f"by {rec.actor}: {rec.reason} (audit record {rec.seq}{', forced' if rec.forced else ''})",
        key=f"{rec.model}-{verb}".replace("_", "-"),
        description=f"{verb} of {rec.channel}",
    )
    return out


@flow(name="promote", description="Point a channel at a version; recorded in the audit log.")
def promote(
    version: str,
    reason: Annotated[str, Field(min_length=3)],
    channel: Channel = "online/champion",
    model: str | None = None,
    force: bool = False,
    registry_url: str | None = None,
) -> dict[str, Any]:
    """Point ``channel`` at ``version``, recorded in the audit log; an edge channel is published too.

    Args:
        version: Version id, or a unique prefix of one.
        reason: Why: recorded in the audit log.
        channel: The channel to move.
        model: The model; needed only when the prefix is ambiguous.
        force: Promote even though the version's gate failed (recorded as forced).
        registry_url: The registry; default FERRY_REGISTRY_URL.
    """
    registry_url = registry_url or StorageSettings().registry_url
    registry = Registry(registry_url)
    check_publishable(registry, version, [channel], model=model)  # a bundle that cannot be built moves nothing
    rec = registry.promote(version, channel, model=model, reason=reason, force=force)
    return _after_move(registry_url, rec, "promote")


@flow(name="rollback", description="Point a channel back at the version it had before its last move.")
def rollback(
    model: str,
    reason: Annotated[str, Field(min_length=3)],
    channel: Channel = "online/champion",
    registry_url: str | None = None,
) -> dict[str, Any]:
    """Point ``channel`` back at the version it had before its last move, recorded in the audit log.

    Args:
        model: The model.
        reason: Why: recorded in the audit log.
        channel: The channel to move back.
        registry_url: The registry; default FERRY_REGISTRY_URL.
    """
    registry_url = registry_url or StorageSettings().registry_url
    rec = Registry(registry_url).rollback(channel, model=model, reason=reason)
    return _after_move(registry_url, rec, "rollback")
