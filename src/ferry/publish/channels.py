"""Publishing edge channels: the version a channel points to, as a signed bundle in the TUF repository."""

from __future__ import annotations

from datetime import timedelta

from ferry.errors import ChannelError
from ferry.publish.bundle import build_bundle
from ferry.publish.tufrepo import KeyStore, PublishResult, TufRepository, target_name
from ferry.registry import Registry
from ferry.settings import EdgeSettings

__all__ = ["open_repository", "publish_channel"]


def open_repository(settings: EdgeSettings | None = None) -> TufRepository:
    settings = settings or EdgeSettings()
    expiry = {
        "timestamp": timedelta(hours=settings.timestamp_expiry_hours),
        "snapshot": timedelta(days=settings.snapshot_expiry_days),
        "targets": timedelta(days=settings.targets_expiry_days),
        "root": timedelta(days=settings.root_expiry_days),
    }
    return TufRepository(settings.repo_url, KeyStore(settings.keys_dir), expiry=expiry, thresholds=settings.thresholds)


def publish_channel(registry: Registry, repo: TufRepository, model: str, channel: str) -> PublishResult:
    """Build and publish the bundle of the version ``channel`` points to. Idempotent: same version, no change."""
    if not channel.startswith("edge/"):
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
