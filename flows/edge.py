"""Edge flows: publish edge channels as signed bundles, and re-sign the timestamp before it expires."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger, task

from ferry import publish
from ferry.publish.tufrepo import describe
from ferry.registry import Registry
from ferry.settings import StorageSettings
from ferry_flows.artifacts import table_artifact


def _logged(model: str, channel: str, result: Any) -> dict[str, Any]:
    get_run_logger().info(
        "%s %s: %s (%s bytes, targets v%d)",
        model,
        channel,
        "published" if result.changed else "already published",
        result.length,
        result.targets_version,
    )
    return asdict(result)


@task(name="publish-channel", retries=2, retry_delay_seconds=5)
def publish_one(registry_url: str, model: str, channel: str) -> dict[str, Any]:
    """Publish one edge channel's version (idempotent)."""
    result = publish.publish_channel(Registry(registry_url), publish.open_repository(), model, channel)
    return _logged(model, channel, result)


@task(name="publish-moved", retries=2, retry_delay_seconds=5)
def publish_moved(registry_url: str, model: str, channels: list[str]) -> list[dict[str, Any]]:
    """After ``channels`` moved: publish the edge ones (:func:`ferry.publish.publish_moved`); others need nothing."""
    results = publish.publish_moved(Registry(registry_url), model, channels)
    return [_logged(model, c, r) for c, r in zip([c for c in channels if publish.is_edge(c)], results, strict=True)]


@flow(name="publish-edge", description="Publish the versions behind edge channels as TUF-signed bundles.")
def publish_edge(
    model: str, channels: list[str] | None = None, registry_url: str | None = None
) -> list[dict[str, Any]]:
    """Publish ``channels`` of ``model`` (default: every edge/... channel that points somewhere)."""
    registry_url = registry_url or StorageSettings().registry_url
    registry = Registry(registry_url)
    names = channels or sorted(c for c in registry.channels(model) if publish.is_edge(c))
    results = [publish_one(registry_url, model, c) for c in names]
    table_artifact(
        [{"target": r["target"], "sha256": r["sha256"][:16], "changed": str(r["changed"])} for r in results],
        key=f"{model.replace('_', '-')}-edge-publish",
        description="Edge bundles published in this run",
    )
    return results


@flow(name="edge-resign", description="Re-sign the TUF timestamp so devices keep trusting the repository.")
def edge_resign() -> dict[str, Any]:
    repo = publish.open_repository()
    version = repo.refresh_timestamp()
    state = describe(repo)
    get_run_logger().info("timestamp v%d, valid until %s", version, state["timestamp"]["expires"])
    return state
