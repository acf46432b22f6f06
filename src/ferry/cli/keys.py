"""``ferry keys create`` / ``list`` / ``revoke``: API keys of the online service, in its key file.

The key file is ``FERRY_ONLINE_API_KEYS_FILE`` (or ``--file``); the service reads it again when it changes, so keys
take effect without a restart (see :mod:`ferry.online.keyfile`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ferry.cli.app import keys_app
from ferry.cli.common import add_column, console, fail
from ferry.errors import ConfigError, FerryError

FileOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--file", "-f", help="The key file. [FERRY_ONLINE_API_KEYS_FILE]"),
]


def _key_file(given: Path | None) -> Path:
    from ferry.online.settings import OnlineSettings

    path = given or OnlineSettings().api_keys_file
    if path is None:
        raise ConfigError("no key file: pass --file or set FERRY_ONLINE_API_KEYS_FILE (the file the service reads)")
    return path


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who holds the key (shown in logs and metrics, never the key).")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope", "-s", help="What the key may do: predict, explain, feedback, telemetry, admin, metrics."
        ),
    ],
    expires: Annotated[
        Optional[datetime],  # noqa: UP045
        typer.Option(help="Refused from this time on (UTC unless it says otherwise), e.g. 2027-01-31T00:00:00."),
    ] = None,
    rate: Annotated[Optional[float], typer.Option(help="Requests per second (a token bucket).")] = None,  # noqa: UP045
    burst: Annotated[Optional[int], typer.Option(help="Requests at once above the rate.")] = None,  # noqa: UP045
    daily_quota: Annotated[Optional[int], typer.Option(help="Requests per UTC day.")] = None,  # noqa: UP045
    file: FileOpt = None,
) -> None:
    """Create a key and print its secret once: it is stored only as a sha256 hash and cannot be shown again."""
    from datetime import UTC

    from ferry.online.keyfile import create_key
    from ferry.online.settings import SCOPES

    try:
        unknown = [s for s in scope if s not in SCOPES]
        if unknown:
            raise ConfigError(f"--scope {unknown[0]!r} is not a scope; choose from {', '.join(SCOPES)}")
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        path = _key_file(file)
        secret, entry = create_key(
            path,
            name,
            scope,  # type: ignore[arg-type]  # checked against SCOPES above
            expires_at=expires,
            rate_per_s=rate,
            burst=burst,
            daily_quota=daily_quota,
        )
    except FerryError as exc:
        raise fail(exc) from exc
    Console(stderr=True).print(
        f"created key {entry.name!r} ({', '.join(entry.scopes)}) in {path}; its secret, shown only now:"
    )
    typer.echo(secret)


@keys_app.command("list")
def keys_list(file: FileOpt = None) -> None:
    """Every key in the file: name, scopes, state, expiry and limits (never a secret, never a hash)."""
    from datetime import UTC

    from rich.table import Table

    from ferry.online.keyfile import read_keys

    try:
        path = _key_file(file)
        entries = read_keys(path)
    except FerryError as exc:
        raise fail(exc) from exc
    now = datetime.now(UTC)
    table = Table(title=f"API keys in {path}", title_justify="left")
    for col in ("name", "scopes", "state", "expires", "rate/s", "burst", "daily quota"):
        add_column(table, col)
    for e in entries:
        expired = e.expires_at is not None and e.expires_at <= now
        state = "[red]revoked[/]" if e.revoked else "[yellow]expired[/]" if expired else "[green]active[/]"
        table.add_row(
            e.name,
            ", ".join(e.scopes),
            state,
            e.expires_at.isoformat() if e.expires_at else "-",
            *(str(v) if v is not None else "-" for v in (e.rate_per_s, e.burst, e.daily_quota)),
        )
    console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    file: FileOpt = None,
) -> None:
    """Revoke a key by name: a running service refuses it (401) within a second. The entry stays, marked revoked."""
    from ferry.online.keyfile import revoke_key

    try:
        path = _key_file(file)
        revoke_key(path, name)
    except FerryError as exc:
        raise fail(exc) from exc
    console().print(f"revoked key {name!r} in {path}")
