"""``ferry housekeeping`` (remove kept data older than its retention; a daily flow runs it) and ``ferry forget``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ferry.cli.app import app
from ferry.cli.common import ModelOpt, RegistryOpt, add_column, console, fail, open_registry
from ferry.errors import FerryError


@app.command()
def housekeeping(
    model: ModelOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Remove logs, samples, reports, history and run directories older than their retention (FERRY_RETENTION_*)."""
    from ferry.governance import RetentionSettings, sweep, sweep_runs
    from ferry.settings import StorageSettings

    try:
        reg = open_registry(registry)
        settings = RetentionSettings()
        names = [model] if model else reg.models()
        results = {name: sweep(reg.url, settings, models=[name], dry_run=dry_run) for name in names}
        results["(run directories)"] = sweep_runs(StorageSettings().work_dir, settings, dry_run=dry_run)
    except FerryError as exc:
        raise fail(exc) from exc
    verb = "would remove" if dry_run else "removed"
    table = Table(title=f"housekeeping in {reg.url}" + (" (dry run)" if dry_run else ""), title_justify="left")
    for col in ("model", "kind", "kept for", verb, "bytes"):
        add_column(table, col)
    for name, swept in results.items():
        for kind, count in sorted(swept.counts().items()):
            days = getattr(settings, kind)
            table.add_row(name, kind, f"{days:g} days", f"{count:,}", f"{swept.bytes[kind]:,}")
    if table.row_count:
        console().print(table)
    else:
        console().print(f"nothing is older than its retention in {reg.url}")


@app.command()
def forget(
    subject_id: Annotated[str, typer.Option("--id", help="The data subject's id (the schema's id column).")],
    model: ModelOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Erase one data subject: their rows in the online logs and feedback, quarantine, batch samples, reference
    samples and run directories (found by the schema's id column). The id is never written, only a keyed hash."""
    from ferry.governance import forget as erase
    from ferry.settings import StorageSettings

    try:
        reg = open_registry(registry)
        result = erase(
            reg, subject_id, models=[model] if model else None, work_dir=StorageSettings().work_dir, dry_run=dry_run
        )
    except FerryError as exc:
        raise fail(exc) from exc
    if not result.rows:
        raise fail(FerryError(f"no rows of id {subject_id!r} in {reg.url} or the run directories; nothing changed"))
    table = Table(title=("would remove" if dry_run else "removed") + f" (subject {result.subject[:16]})")
    for col in ("where", "rows"):
        add_column(table, col)
    for place, rows in sorted(result.counts.items()):
        table.add_row(place, f"{rows:,}")
    console().print(table)
