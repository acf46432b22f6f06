"""A release: one version moved to several channels at once (``online/champion`` and ``edge/stable``, say), under
the model's one lock, as ONE audit record, all or nothing; and the rollback of the last release, the same way.

The record (action ``release``) lists every channel's move (``moves``); it reaches the log in one atomic write, so a
process killed at any step leaves the release either whole in the log or absent: the channels never point at
different releases (``channels.json`` follows the log, and a move that stopped between the two is completed by the
next one). The reason carries the release id, ``release r-<8 hex>: <reason>``, which names the release in the log,
in ``ferry status`` and in its rollback's record (action ``release-rollback``, reason
``rollback of release r-<8 hex>: <reason>``). Building and publishing the edge bundle around the move is
:func:`ferry.publish.release_and_publish`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ferry.errors import ChannelError
from ferry.registry.audit import AuditRecord
from ferry.registry.store import Registry
from ferry.registry.versions import ModelVersion

__all__ = ["Release", "last_release", "parse_channels", "release", "release_id", "rollback_release"]

RELEASE_REASON = re.compile(r"^(?:release|rollback of release) (r-[0-9a-f]{8}): ")


@dataclass(frozen=True)
class Release:
    """A release's id and its one audit record (of the release, or of its rollback)."""

    id: str
    record: AuditRecord

    @property
    def channels(self) -> list[str]:
        return self.record.channels


def release_id(record: AuditRecord) -> str | None:
    """The release id a release or release-rollback record names in its reason, else None."""
    found = RELEASE_REASON.match(record.reason)
    return found.group(1) if found and record.action in ("release", "release-rollback") else None


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
    prepare: Callable[[ModelVersion], None] | None = None,
) -> Release:
    """Point every channel of ``channels`` at ``version`` as one release (one audit record); nothing moves when any
    move is refused or ``prepare`` (run under the lock before the write) fails. Run again after it was killed
    half-way, it completes that release (same record, same id) instead of refusing."""
    rid = f"r-{uuid.uuid4().hex[:8]}"
    record = registry.release(
        version, channels, reason=f"release {rid}: {reason.strip()}", model=model, force=force, actor=actor,
        prepare=prepare,
    )  # fmt: skip
    return Release(release_id(record) or rid, record)


def last_release(registry: Registry, model: str) -> Release | None:
    """The newest release of ``model``, or None when no release was made."""
    for record in reversed(registry.audit(model)):
        rid = release_id(record)
        if rid is not None and record.action == "release":
            return Release(rid, record)
    return None


def rollback_release(registry: Registry, model: str, *, reason: str, actor: str | None = None) -> Release:
    """Move every channel of the last release back to where it was before it, as one record; refused (ChannelError)
    when there is no release, when it was already rolled back, or when one of its channels has moved since (checked
    again under the lock)."""
    last = last_release(registry, model)
    if last is None:
        raise ChannelError(f"model {model!r} has no release to roll back; releases are made with `ferry release`")
    if any(r.action == "release-rollback" and release_id(r) == last.id for r in registry.audit(model)):
        raise ChannelError(f"release {last.id} of {model!r} was already rolled back")
    why = f"rollback of release {last.id}: {reason.strip()}"
    try:
        undone = registry.rollback_release(last.record, reason=why, actor=actor)
    except ChannelError as exc:
        raise ChannelError(f"release {last.id}: {exc}") from exc
    return Release(last.id, undone)
