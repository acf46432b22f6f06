"""``ferry promote`` and ``ferry rollback``: channel moves, recorded in the audit log; an edge channel is then
published too.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from ferry.cli.app import app
from ferry.cli.common import ModelOpt, PublishOpt, RegistryOpt, console, fail, one_model, open_registry
from ferry.errors import FerryError, MissingExtra


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Version id (a unique prefix is enough).")],
    channel: Annotated[str, typer.Option("--channel", "-c", help="Channel to move, e.g. online/champion.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: recorded in the audit log.")],
    force: Annotated[
        bool, typer.Option(help="Promote even though the version's gate did not pass (recorded).")
    ] = False,
    publish: PublishOpt = True,
    registry: RegistryOpt = None,
) -> None:
    """Point a channel at a version, recording who, when and why in the audit log. An edge/... channel is then
    published as a signed bundle (devices see it on their next sync)."""
    try:
        reg = open_registry(registry)
        rec = reg.promote(version, channel, reason=reason, force=force)
    except FerryError as exc:
        raise fail(exc) from exc
    console().print(
        f"[green]{rec.channel}[/]: {rec.from_version or '(none)'} -> [bold]{rec.to_version}[/] "
        f"(audit record {rec.seq}, by {rec.actor})"
    )
    if publish:
        publish_edge(reg, rec.model, rec.channel)


def publish_edge(registry: Any, model: str, channel: str) -> None:
    """Publish the channel right after it moved when it is an edge one (:func:`ferry.publish.publish_moved`)."""
    try:
        from ferry.publish import publish_moved

        results = publish_moved(registry, model, [channel])
    except ImportError as exc:
        raise fail(MissingExtra("edge", exc.name or "tuf")) from exc
    except FerryError as exc:
        Console(stderr=True).print(
            f"[bold red]error:[/] {channel} moved, but its bundle was not published: {exc}; "
            f"fix it and run `ferry edge publish --model {model} --channel {channel}`"
        )
        raise typer.Exit(code=2) from exc
    for result in results:
        state = "published" if result.changed else "already published"
        console().print(f"{channel}: {state} {result.target} (sha256 {result.sha256[:16]}, {result.length} B)")


@app.command()
def rollback(
    channel: Annotated[str, typer.Option("--channel", "-c", help="Channel to move back, e.g. online/champion.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: recorded in the audit log.")] = "manual rollback",
    model: ModelOpt = None,
    publish: PublishOpt = True,
    registry: RegistryOpt = None,
) -> None:
    """Point a channel back at the version it had before its last move (an edge/... channel is then published)."""
    try:
        reg = open_registry(registry)
        rec = reg.rollback(channel, model=one_model(reg, model), reason=reason)
    except FerryError as exc:
        raise fail(exc) from exc
    console().print(
        f"[yellow]{rec.channel}[/]: {rec.from_version} -> [bold]{rec.to_version}[/] "
        f"(audit record {rec.seq}, by {rec.actor})"
    )
    if publish:
        publish_edge(reg, rec.model, rec.channel)
