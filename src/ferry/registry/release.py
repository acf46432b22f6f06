"""A release: one version moved to several channels at once (``online/champion`` and ``edge/stable``, say), under
the model's one lock, all or nothing; and the rollback of the last release, the same way.

A release writes one audit record per channel, in one atomic write of the log (see
:meth:`ferry.registry.Registry.promote_many`), so a process killed at any step leaves either every record or none:
the channels never point at different releases. The records of a release share a release id in their reason,
``release r-<8 hex>: <reason>``, which is how :func:`last_release` finds them again and how the audit log shows
them together. Publishing the edge bundles follows the move (:func:`ferry.publish.publish_moved`), as after any
promotion.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from ferry.errors import ChannelError
from ferry.registry.audit import AuditRecord
from ferry.registry.store import Registry

__all__ = ["Release", "last_release", "release", "rollback_release"]

RELEASE_REASON = re.compile(r"^(?:release|rollback of release) (r-[0-9a-f]{8}): ")


@dataclass(frozen=True)
class Release:
    """A release's id and its records (one per channel, in the order they were written)."""

    id: str
    records: list[AuditRecord]

    @property
    def channels(self) -> list[str]:
        return [r.channel for r in self.records]


def parse_channels(text: str) -> list[str]:
    """``online/champion,edge/stable`` as a list; ChannelError when it names none or one twice."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names or len(set(names)) != len(names):
        raise ChannelError(f"--to {text!r}: name one or more channels, comma-separated, each once")
    return names


def release(
    registry: Registry,
    version: str,
    channels: list[str],
    *,
    reason: str,
    model: str | None = None,
    force: bool = False,
    actor: str | None = None,
) -> Release:
    """Point every channel of ``channels`` at ``version`` as one release; nothing moves when any move is refused."""
    rid = f"r-{uuid.uuid4().hex[:8]}"
    records = registry.promote_many(
        version, channels, reason=f"release {rid}: {reason.strip()}", model=model, force=force, actor=actor
    )
    return Release(rid, records)


def last_release(registry: Registry, model: str) -> Release | None:
    """The newest release of ``model`` (its records), or None when no release was made."""
    records = registry.audit(model)
    for i in range(len(records) - 1, -1, -1):
        found = RELEASE_REASON.match(records[i].reason)
        if found and records[i].reason.startswith("release "):
            rid = found.group(1)
            group = [r for r in records if r.reason.startswith(f"release {rid}: ")]
            return Release(rid, group)
    return None


def rollback_release(registry: Registry, model: str, *, reason: str, actor: str | None = None) -> Release:
    """Move every channel of the last release back to where it was before it, as one write; refused (ChannelError)
    when there is no release, when it was already rolled back, or when one of its channels has moved since."""
    last = last_release(registry, model)
    if last is None:
        raise ChannelError(f"model {model!r} has no release to roll back; releases are made with `ferry release`")
    records = registry.audit(model)
    if any(r.reason.startswith(f"rollback of release {last.id}: ") for r in records):
        raise ChannelError(f"release {last.id} of {model!r} was already rolled back")
    channels = registry.channels(model)
    for rec in last.records:
        now = channels.get(rec.channel)
        if now is None or now.version != rec.to_version:
            raise ChannelError(
                f"channel {rec.channel!r} moved since release {last.id} (it points to "
                f"{now.version if now else None}, the release set {rec.to_version}); roll it back on its own"
            )
        if rec.from_version is None:
            raise ChannelError(
                f"channel {rec.channel!r} pointed nowhere before release {last.id}; there is nothing to go back to"
            )
    undone = registry.rollback_many(
        last.channels, model=model, reason=f"rollback of release {last.id}: {reason.strip()}", actor=actor
    )
    return Release(last.id, undone)
