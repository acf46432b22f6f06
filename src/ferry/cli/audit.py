"""``ferry audit verify``: check the hash chain of the audit log."""

from __future__ import annotations

import typer

from ferry.cli.app import audit_app
from ferry.cli.common import ModelOpt, RegistryOpt, console, fail, open_registry
from ferry.errors import FerryError


@audit_app.command("verify")
def audit_verify(model: ModelOpt = None, registry: RegistryOpt = None) -> None:
    """Check the hash chain of the audit log; name the first bad record. Exits 1 when the log is broken."""
    try:
        reg = open_registry(registry)
        names = [model] if model else reg.models()
        broken = False
        for name in names:
            report = reg.verify_audit(name)
            if report.ok:
                console().print(f"[green]ok[/] {name}: {report.n_records} records, hash chain intact")
            else:
                broken = True
                console().print(
                    f"[bold red]BROKEN[/] {name}: first bad record at line {report.first_bad}: {report.problem}"
                )
    except FerryError as exc:
        raise fail(exc) from exc
    if broken:
        raise typer.Exit(code=1)
