"""Publishing edge channels: the version a channel points to, as a signed bundle in the TUF repository.

:func:`check_publishable` comes before a move: it builds (in memory) the bundle of the version about to be pointed
to by an edge channel, so a version whose bundle cannot be built is refused while every pointer is still where it
was (``ferry promote``/``release``/``rollback``, the ``promote`` flow and the retrain's promotion call it).

:func:`publish_moved` is the one step every channel move is followed by (``ferry promote``/``rollback``, the
``promote``/``rollback`` flows, the retrain flow's promotion and the monitor's rollout): each moved ``edge/...``
channel is published at once, and any other needs nothing. The bundle and TUF modules (the ``edge`` extra) are
imported only when an edge channel is published.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from ferry.errors import BundleError, ChannelError
from ferry.registry import Registry
from ferry.settings import EdgeSettings

if TYPE_CHECKING:
    from ferry.publish.tufrepo import PublishResult, TufRepository

__all__ = ["EDGE_PREFIX", "check_publishable", "is_edge", "open_repository", "publish_channel", "publish_moved"]

EDGE_PREFIX = "edge/"


def is_edge(channel: str) -> bool:
    """True for the channels devices follow (``edge/...``): the ones that are published."""
    return channel.startswith(EDGE_PREFIX)


def open_repository(settings: EdgeSettings | None = None) -> TufRepository:
    """The TUF repository and signing keys the edge settings (``FERRY_EDGE_*``) name."""
    from ferry.publish.tufrepo import KeyStore, TufRepository

    settings = settings or EdgeSettings()
    expiry = {
        "timestamp": timedelta(hours=settings.timestamp_expiry_hours),
        "snapshot": timedelta(days=settings.snapshot_expiry_days),
        "targets": timedelta(days=settings.targets_expiry_days),
        "root": timedelta(days=settings.root_expiry_days),
    }
    return TufRepository(settings.repo_url, KeyStore(settings.keys_dir), expiry=expiry, thresholds=settings.thresholds)


def check_publishable(registry: Registry, version: str, channels: Iterable[str], *, model: str | None = None) -> None:
    """Before ``channels`` move to ``version``: build its bundle when one of them is an edge channel; BundleError
    (saying that nothing moved) when it cannot be built. Other channels need nothing."""
    from ferry.publish.bundle import build_bundle

    edge = [c for c in channels if is_edge(c)]
    if not edge:
        return
    found = registry.get(version, model=model)
    try:
        build_bundle(registry, found)
    except BundleError as exc:
        raise BundleError(f"{', '.join(edge)} not moved: {exc}") from exc


def publish_channel(registry: Registry, repo: TufRepository, model: str, channel: str) -> PublishResult:
    """Build and publish the bundle of the version ``channel`` points to. Idempotent: same version, no change."""
    from ferry.publish.bundle import build_bundle
    from ferry.publish.tufrepo import target_name

    if not is_edge(channel):
        raise ChannelError(f"channel {channel!r} is not an edge channel (edge/...); only those are published")
    version_id = registry.channel(model, channel)
    if version_id is None:
        raise ChannelError(f"channel {channel!r} of {model!r} points nowhere; promote a version to it first")
    version = registry.get(version_id, model=model)
    bundle = build_bundle(registry, version)
    if repo.root_version() == 0:
        repo.init()
    return repo.publish(
        target_name(model, channel), bundle.data, custom={"version": version.id, "model": model, "channel": channel}
    )


def publish_moved(
    registry: Registry, model: str, channels: Iterable[str], *, repo: TufRepository | None = None
) -> list[PublishResult]:
    """After ``channels`` of ``model`` moved: publish each edge one at once; the others need nothing.

    Returns one result per published channel (empty when none is an edge channel); the repository is opened from
    the edge settings unless ``repo`` is given. Idempotent, like :func:`publish_channel`.
    """
    edge = [c for c in channels if is_edge(c)]
    if not edge:
        return []
    repo = repo or open_repository()
    return [publish_channel(registry, repo, model, c) for c in edge]
