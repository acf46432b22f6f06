"""``promote`` and ``rollback``: manual channel moves from the Prefect UI, with typed parameters and the audit log.

``promote`` moves one channel, or several at once as one release (``channels``: one audit record, all or nothing,
as ``ferry release``); ``rollback`` moves one channel back, or with ``last_release`` every channel of the last
release. Moving an ``edge/...`` channel publishes its bundle in the same run.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from ferry.publish import check_publishable, is_edge, release_and_publish
from ferry.registry import Registry
from ferry.registry.audit import AuditRecord
from ferry.registry.release import rollback_release
from ferry.settings import StorageSettings
from ferry_flows.edge import publish_moved

Channel = Literal["online/champion", "online/challenger", "batch", "edge/beta", "edge/stable"]


def _record(rec: AuditRecord) -> dict[str, Any]:
    return {
        "seq": rec.seq,
        "action": rec.action,
        "model": rec.model,
        "channel": rec.channel,
        "from": rec.from_version,
        "to": rec.to_version,
        "moves": [{"channel": m.channel, "from": m.from_version, "to": m.to_version} for m in rec.changes],
        "actor": rec.actor,
        "reason": rec.reason,
        "forced": rec.forced,
    }


def _after_move(
    registry_url: str, rec: AuditRecord, verb: str, *, published: list[Any] | None = None
) -> dict[str, Any]:
    out = _record(rec)
    if published is None:
        published = publish_moved(registry_url, rec.model, rec.channels)
    if published:
        out["published"] = published
    lines = [f"`{m.channel}`: `{m.from_version}` → `{m.to_version}`" for m in rec.changes]
    for line in lines:
        get_run_logger().info("%s of %s: %s", verb, rec.model, line.replace("`", ""))
    create_markdown_artifact(
        f"**{verb}** of `{rec.model}`:\n\n" + "\n".join(f"- {line}" for line in lines) + "\n\n"
        f"by {rec.actor}: {rec.reason} (audit record {rec.seq}{', forced' if rec.forced else ''})",
        key=f"{rec.model}-{verb}".replace("_", "-"),
        description=f"{verb} of {rec.channel}",
    )
    return out


@flow(name="promote", description="Point one channel, or several as one release, at a version; audited.")
def promote(
    version: str,
    reason: Annotated[str, Field(min_length=3)],
    channels: Annotated[list[Channel], Field(min_length=1)] = ["online/champion"],  # noqa: B006
    model: str | None = None,
    force: bool = False,
    registry_url: str | None = None,
) -> dict[str, Any]:
    """Point ``channels`` at ``version``, recorded in the audit log: one channel as a promotion, several as one
    release (one record, all or nothing, e.g. online/champion and edge/stable); edge channels are published too.

    Args:
        version: Version id, or a unique prefix of one.
        reason: Why: recorded in the audit log.
        channels: The channels to move; several move together as one release.
        model: The model; needed only when the prefix is ambiguous.
        force: Promote even though the version's gate failed (recorded as forced).
        registry_url: The registry; default FERRY_REGISTRY_URL.
    """
    registry_url = registry_url or StorageSettings().registry_url
    registry = Registry(registry_url)
    check_publishable(registry, version, list(channels), model=model)  # an unbuildable bundle moves nothing
    if len(channels) == 1:
        rec = registry.promote(version, channels[0], model=model, reason=reason, force=force)
        return _after_move(registry_url, rec, "promote")
    publish = any(is_edge(c) for c in channels)
    done, published = release_and_publish(
        registry, version, list(channels), reason=reason, model=model, force=force, publish=publish
    )
    return {**_after_move(registry_url, done.record, "release", published=published), "release": done.id}


@flow(name="rollback", description="Point a channel, or every channel of the last release, back where it was.")
def rollback(
    model: str,
    reason: Annotated[str, Field(min_length=3)],
    channel: Channel = "online/champion",
    last_release: bool = False,
    registry_url: str | None = None,
) -> dict[str, Any]:
    """Point ``channel`` back at the version it had before its last move, recorded in the audit log; with
    ``last_release``, every channel of the last release instead, as one record.

    Args:
        model: The model.
        reason: Why: recorded in the audit log.
        channel: The channel to move back (ignored with last_release).
        last_release: Move back every channel of the model's last release, together.
        registry_url: The registry; default FERRY_REGISTRY_URL.
    """
    registry_url = registry_url or StorageSettings().registry_url
    registry = Registry(registry_url)
    if last_release:
        undone = rollback_release(registry, model, reason=reason)
        return {**_after_move(registry_url, undone.record, "rollback"), "release": undone.id}
    rec = registry.rollback(channel, model=model, reason=reason)
    return _after_move(registry_url, rec, "rollback")
