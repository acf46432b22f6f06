"""``ferry status``: what runs where (the view is :mod:`ferry.status`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from ferry.cli.app import app
from ferry.cli.common import ModelOpt, RegistryOpt, add_column, console, fail, open_registry
from ferry.errors import FerryError


@app.command()
def status(
    model: ModelOpt = None,
    online_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--online-url", envvar="FERRY_STATUS_ONLINE_URL", help="Ask this online service what it serves."),
    ] = None,
    api_key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--api-key", envvar="FERRY_STATUS_API_KEY", help="A key of the online service with the predict scope."
        ),
    ] = None,
    registry: RegistryOpt = None,
) -> None:
    """What runs where: every channel's version, batch outputs, the online service, devices, and the skew."""
    from ferry import status as status_view
    from ferry.cli.views import print_status
    from ferry.registry.release import release_id
    from ferry.train.summary import fmt

    try:
        reg = open_registry(registry)
        names = [model] if model else reg.models()
        table = Table(title=f"channels in {reg.url}", title_justify="left")
        for col in ("model", "channel", "version", "roc_auc", "moved at", "moved by", "previous"):
            add_column(table, col)
        views = []
        for name in names:
            records = {r.hash: r for r in reg.audit(name)}
            for channel, state in sorted(reg.channels(name).items()):
                v = reg.get(state.version, model=name)
                rec = records.get(state.audit_head)
                rid = release_id(rec) if rec else None
                table.add_row(
                    name,
                    channel,
                    state.version,
                    fmt(v.info.get("metrics", {}).get("roc_auc")),
                    str(state.moved_at)[:16].replace("T", " "),
                    f"{rec.action} {rid or ''} (#{rec.seq})".replace("  ", " ") if rec else "",
                    state.history[-1] if state.history else "",
                )
            views.append(status_view.collect(reg, name, online_url=online_url, api_key=api_key))
    except FerryError as exc:
        raise fail(exc) from exc
    if not table.row_count:
        console().print("no channel points anywhere yet: run `ferry demo` or `ferry train`")
        return
    console().print(table)
    for view in views:
        print_status(view)
