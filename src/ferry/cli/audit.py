"""``ferry audit verify`` and ``ferry audit sign``: check the audit log (hash chain, pointers, signed head)."""

from __future__ import annotations

import typer

from ferry.cli.app import audit_app
from ferry.cli.common import ModelOpt, RegistryOpt, console, fail, open_registry
from ferry.errors import FerryError


@audit_app.command("verify")
def audit_verify(model: ModelOpt = None, registry: RegistryOpt = None) -> None:
    """Check the hash chain of the audit log, the channel pointers and, with an audit key configured
    (FERRY_AUDIT_PUBLIC_KEY_FILE or FERRY_AUDIT_KEY_FILE), the signed head; name the first problem. Exits 1 when
    the log is broken."""
    try:
        reg = open_registry(registry)
        names = [model] if model else reg.models()
        broken = False
        for name in names:
            report = reg.verify_audit(name)
            if report.ok:
                signed = "signed head verified" if report.signed else "head not signed (no FERRY_AUDIT_KEY_FILE)"
                console().print(f"[green]ok[/] {name}: {report.n_records} records, hash chain intact, {signed}")
            else:
                broken = True
                where = f"first bad record at line {report.first_bad}: " if report.first_bad else ""
                console().print(f"[bold red]BROKEN[/] {name}: {where}{report.problem}")
    except FerryError as exc:
        raise fail(exc) from exc
    if broken:
        raise typer.Exit(code=1)


@audit_app.command("sign")
def audit_sign(model: ModelOpt = None, registry: RegistryOpt = None) -> None:
    """Sign the head of an audit log whose chain and pointers check out, with FERRY_AUDIT_KEY_FILE: to start signing
    an existing registry, or after an investigation. Every move signs the head by itself."""
    from ferry.cli.common import one_model

    try:
        reg = open_registry(registry)
        name = one_model(reg, model)
        report = reg.sign_audit(name)
    except FerryError as exc:
        raise fail(exc) from exc
    console().print(f"[green]signed[/] {name}: head of {report.n_records} records")
