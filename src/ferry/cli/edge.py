"""``ferry edge``: publish edge channels as TUF-signed bundles, re-sign, rotate keys, and show the repository."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ferry.errors import FerryError

edge_app = typer.Typer(help="Publish edge bundles (a TUF repository devices pull from).", no_args_is_help=True)


def _fail(exc: BaseException) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


@edge_app.command("publish")
def publish(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name.")],
    channel: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--channel", "-c", help="Edge channel(s); default: every edge/... channel that points somewhere."),
    ] = None,
) -> None:
    """Build and publish the bundle of each edge channel's version (idempotent)."""
    from ferry.publish import is_edge, open_repository, publish_channel
    from ferry.registry import Registry

    try:
        registry = Registry.from_settings()
        repo = open_repository()
        names = channel or sorted(c for c in registry.channels(model) if is_edge(c))
        if not names:
            raise FerryError(
                f"no edge channel of {model!r} points anywhere; `ferry promote VERSION -c edge/beta` first"
            )
        out = Console()
        for name in names:
            r = publish_channel(registry, repo, model, name)
            state = "[green]published[/]" if r.changed else "already published"
            out.print(
                f"{name}: {state} {r.target} sha256 {r.sha256[:16]} ({r.length} B), timestamp v{r.timestamp_version}"
            )
    except FerryError as exc:
        raise _fail(exc) from exc


@edge_app.command("status")
def status() -> None:
    """Metadata versions, the timestamp's expiry and every published target."""
    from ferry.publish import open_repository
    from ferry.publish.tufrepo import describe

    try:
        state = describe(open_repository())
    except FerryError as exc:
        raise _fail(exc) from exc
    out = Console()
    roles = ", ".join(f"{r} {v['threshold']} of {v['keys']}" for r, v in state["roles"].items())
    out.print(f"signatures needed: {roles}")
    out.print(
        f"root v{state['root']}, snapshot v{state['snapshot']}, timestamp v{state['timestamp']['version']} "
        f"(expires {state['timestamp']['expires']})"
    )
    table = Table(title="targets", title_justify="left")
    for col in ("target", "version", "sha256", "bytes"):
        table.add_column(col, no_wrap=col in ("version", "sha256"))
    for name, t in sorted(state["targets"].items()):
        table.add_row(name, str(t.get("version", "")), t["sha256"][:16], str(t["length"]))
    out.print(table)


@edge_app.command("resign")
def resign() -> None:
    """Re-sign the timestamp with a fresh expiry (what the edge-resign deployment does on a schedule)."""
    from ferry.publish import open_repository

    try:
        version = open_repository().refresh_timestamp()
    except FerryError as exc:
        raise _fail(exc) from exc
    Console().print(f"timestamp re-signed: v{version}")


@edge_app.command("rotate")
def rotate(
    role: Annotated[str, typer.Option("--role", help="root, targets, snapshot or timestamp.")],
    slot: Annotated[
        int, typer.Option("--slot", min=1, help="Which of the role's keys: 1 is <role>.pem, N <role>-N.pem.")
    ] = 1,
) -> None:
    """Replace one of a role's signing keys through a new root version (the old file is kept as <file>.old)."""
    from ferry.publish import open_repository

    try:
        version = open_repository().rotate_key(role, slot=slot)
    except FerryError as exc:
        raise _fail(exc) from exc
    Console().print(f"{role} key rotated: root is now v{version}")
