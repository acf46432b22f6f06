"""Publishing edge channels: the version a channel points to, as a signed bundle in the TUF repository.

:func:`check_publishable` comes before a move: it builds (in memory) the bundle of the version about to be pointed
to by an edge channel, so a version whose bundle cannot be built is refused while every pointer is still where it
was (``ferry promote``/``release``/``rollback``, the ``promote`` flow and the retrain's promotion call it).

:func:`publish_moved` is the one step every channel move is followed by (``ferry promote``/``rollback``, the
``promote``/``rollback`` flows, the retrain flow's promotion and the monitor's rollout): each moved ``edge/...``
channel is published at once, and any other needs nothing. :func:`release_and_publish` is a release with its edge
bundle: built under the model's lock before the release's record is written (a bundle that cannot be built moves
nothing), published once the record is in. The bundle and TUF modules (the ``edge`` extra) are imported only when an
edge channel is published.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from ferry.errors import BundleError, ChannelError
from ferry.registry import ModelVersion, Registry
from ferry.registry.release import Release, release
from ferry.settings import EdgeSettings

if TYPE_CHECKING:
    from ferry.publish.bundle import Bundle
    from ferry.publish.tufrepo import PublishResult, TufRepository

__all__ = [
    "EDGE_PREFIX",
    "check_publishable",
    "is_edge",
    "open_repository",
    "publish_channel",
    "publish_moved",
    "release_and_publish",
]

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
    passphrase = settings.key_passphrase.get_secret_value().encode() if settings.key_passphrase else None
    keys = KeyStore(settings.keys_dir, passphrase=passphrase)
    return TufRepository(settings.repo_url, keys, expiry=expiry, thresholds=settings.thresholds)


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

    if not is_edge(channel):
        raise ChannelError(f"channel {channel!r} is not an edge channel (edge/...); only those are published")
    version_id = registry.channel(model, channel)
    if version_id is None:
        raise ChannelError(f"channel {channel!r} of {model!r} points nowhere; promote a version to it first")
    version = registry.get(version_id, model=model)
    return _publish_bundle(repo, build_bundle(registry, version), model, channel)


def _publish_bundle(repo: TufRepository, bundle: Bundle, model: str, channel: str) -> PublishResult:
    from ferry.publish.tufrepo import target_name

    if repo.root_version() == 0:
        repo.init()
    custom = {"version": bundle.manifest["version"], "model": model, "channel": channel}
    return repo.publish(target_name(model, channel), bundle.data, custom=custom)


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


def release_and_publish(
    registry: Registry,
    version: str,
    channels: list[str],
    *,
    reason: str,
    model: str | None = None,
    force: bool = False,
    publish: bool = True,
    repo: TufRepository | None = None,
) -> tuple[Release, list[PublishResult]]:
    """:func:`ferry.registry.release.release` of ``version`` to ``channels``, with the edge bundle: built under the
    lock before the record is written, then published to each edge channel of the release (unless ``publish`` is
    False). Steps: lock, bundle, audit record, pointers, signed head, TUF. A failure before the record moves nothing;
    after it, the release has happened and ``ferry edge publish`` (or any later publish) brings the bundle out."""
    edge = [c for c in channels if is_edge(c)]
    built: list[Bundle] = []

    def prepare(v: ModelVersion) -> None:
        if edge and publish:
            from ferry.publish.bundle import build_bundle

            try:
                built.append(build_bundle(registry, v))
            except BundleError as exc:
                raise BundleError(f"{', '.join(channels)} not moved: {exc}") from exc

    done = release(registry, version, channels, reason=reason, model=model, force=force, prepare=prepare)
    if not built:
        return done, []
    repo = repo or open_repository()
    return done, [_publish_bundle(repo, built[0], done.record.model, c) for c in edge]
