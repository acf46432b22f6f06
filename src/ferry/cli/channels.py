"""``ferry promote``, ``ferry release`` and ``ferry rollback``: channel moves, recorded in the audit log; an edge
channel is then published too.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

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
        if publish:
            check_edge(reg, version, [channel])
        rec = reg.promote(version, channel, reason=reason, force=force)
    except FerryError as exc:
        raise fail(exc) from exc
    console().print(
        f"[green]{rec.channel}[/]: {rec.from_version or '(none)'} -> [bold]{rec.to_version}[/] "
        f"(audit record {rec.seq}, by {rec.actor})"
    )
    if publish:
        publish_edge(reg, rec.model, rec.channel)


def check_edge(registry: Any, version: str, channels: list[str], *, model: str | None = None) -> None:
    """Before the move: the version's bundle builds when an edge channel is among ``channels`` (BundleError if not,
    :func:`ferry.publish.check_publishable`)."""
    try:
        from ferry.publish import check_publishable
    except ImportError as exc:
        raise MissingExtra("edge", exc.name or "onnx") from exc
    check_publishable(registry, version, channels, model=model)


def publish_edge(registry: Any, model: str, *channels: str) -> None:
    """Publish the channels right after they moved, those that are edge ones (:func:`ferry.publish.publish_moved`)."""
    channel = ", ".join(channels)
    try:
        from ferry.publish import is_edge, publish_moved

        edge = [c for c in channels if is_edge(c)]
        results = publish_moved(registry, model, edge)
    except ImportError as exc:
        raise fail(MissingExtra("edge", exc.name or "tuf")) from exc
    except FerryError as exc:
        Console(stderr=True).print(
            f"[bold red]error:[/] {channel} moved, but its bundle was not published: {exc}; "
            f"fix it and run `ferry edge publish --model {model} --channel CHANNEL` for each"
        )
        raise typer.Exit(code=2) from exc
    for name, result in zip(edge, results, strict=True):
        state = "published" if result.changed else "already published"
        console().print(f"{name}: {state} {result.target} (sha256 {result.sha256[:16]}, {result.length} B)")


@app.command()
def release(
    version: Annotated[str, typer.Argument(help="Version id (a unique prefix is enough).")],
    to: Annotated[
        str, typer.Option("--to", help="Channels to move together, comma-separated: online/champion,edge/stable.")
    ],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: recorded in the audit log.")] = "release",
    model: ModelOpt = None,
    force: Annotated[
        bool, typer.Option(help="Release even though the version's gate did not pass (recorded).")
    ] = False,
    publish: PublishOpt = True,
    registry: RegistryOpt = None,
) -> None:
    """Point several channels at one version at once, under one lock: all of them move or none does. Its edge/...
    channels are then published."""
    from ferry.registry.release import parse_channels
    from ferry.registry.release import release as make_release

    try:
        reg = open_registry(registry)
        if publish:
            check_edge(reg, version, parse_channels(to), model=model)
        done = make_release(reg, version, parse_channels(to), reason=reason, model=model, force=force)
    except FerryError as exc:
        raise fail(exc) from exc
    for rec in done.records:
        console().print(
            f"[green]{rec.channel}[/]: {rec.from_version or '(none)'} -> [bold]{rec.to_version}[/] "
            f"(audit record {rec.seq}, release {done.id}, by {rec.actor})"
        )
    if publish:
        publish_edge(reg, done.records[0].model, *done.channels)


@app.command()
def rollback(
    channel: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--channel", "-c", help="Channel to move back, e.g. online/champion."),
    ] = None,
    last_release: Annotated[
        bool, typer.Option("--release", help="Move back every channel of the last release, together.")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why: recorded in the audit log.")] = "manual rollback",
    model: ModelOpt = None,
    publish: PublishOpt = True,
    registry: RegistryOpt = None,
) -> None:
    """Point a channel back at the version it had before its last move, or with --release every channel of the
    last release (an edge/... channel is then published)."""
    from ferry.registry.release import last_release as last_release_of
    from ferry.registry.release import rollback_release

    if (channel is None) == (not last_release):
        raise fail(FerryError("give either --channel CHANNEL or --release, not both"))
    try:
        reg = open_registry(registry)
        name = one_model(reg, model)
        if last_release:
            found = last_release_of(reg, name)
            if publish and found is not None:
                for rec in found.records:
                    if rec.from_version is not None:
                        check_edge(reg, rec.from_version, [rec.channel], model=name)
            records = rollback_release(reg, name, reason=reason).records
        else:
            assert channel is not None
            state = reg.channels(name).get(channel)
            if publish and state is not None and state.history:
                check_edge(reg, state.history[-1], [channel], model=name)
            records = [reg.rollback(channel, model=name, reason=reason)]
    except FerryError as exc:
        raise fail(exc) from exc
    for rec in records:
        console().print(
            f"[yellow]{rec.channel}[/]: {rec.from_version} -> [bold]{rec.to_version}[/] "
            f"(audit record {rec.seq}, by {rec.actor})"
        )
    if publish:
        publish_edge(reg, records[0].model, *[r.channel for r in records])
