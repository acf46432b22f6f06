"""The rich tables the commands print: a retrain's outcome, gate checks, a batch run's summary, what runs where."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from ferry import status
from ferry.cli.common import add_column, console


def print_outcome(outcome: dict[str, Any]) -> None:
    """The retrain summary as rich tables."""
    if outcome.get("skipped"):
        console().print(f"[yellow]not retrained[/]: {escape(outcome['skipped'])}")
        return
    if outcome["promoted"]:
        verdict = f"[bold green]PROMOTED[/] to {', '.join(outcome['promoted'])}"
    elif outcome["gate_passed"]:
        verdict = "[yellow]gate passed, channels already pointed here[/]"
    else:
        verdict = "[bold red]REJECTED[/] by the gate"
    summary = Table(title=f"retrain of {outcome['model']}", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    summary.add_row("version", outcome["version"])
    summary.add_row("verdict", verdict)
    summary.add_row("data", f"{outcome['data_url']} ({outcome['rows']} rows)")
    summary.add_row("champion compared", outcome["champion"] or "none (first model: absolute floors only)")
    for reason in outcome["reasons"]:
        summary.add_row("why", f"[red]{escape(reason)}[/]")
    summary.add_row("version dir", outcome["version_url"])
    summary.add_row("gate report", outcome["gate_html"])
    summary.add_row("data-quality report", outcome["data_quality_html"])
    console().print(summary)

    from ferry.train.summary import metric_rows

    rows = metric_rows(outcome["metrics"], outcome.get("champion_metrics"))
    metrics = Table(title="holdout metrics", title_justify="left")
    for col in rows[0]:
        metrics.add_column(col, justify="right" if col != "metric" else "left")
    for r in rows:
        metrics.add_row(*r.values())
    console().print(metrics)
    print_gate(outcome["checks"])


def print_gate(checks: list[dict[str, Any]]) -> None:
    from ferry.train.summary import gate_rows

    table = Table(title="gate checks", title_justify="left")
    for col in ("check", "value", "threshold", "pass"):
        table.add_column(col, justify="right" if col == "value" else "left", overflow="fold")
    for r in gate_rows(checks, group_passing=True):
        style = "green" if r["pass"] == "PASS" else "bold red"
        table.add_row(escape(r["check"]), r["value"], escape(r["threshold"]), f"[{style}]{r['pass']}[/]")
    console().print(table)


def print_batch(s: dict[str, Any]) -> None:
    table = Table(title=f"batch score of {s['model']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("version", s["version"])
    table.add_row("partitions", f"{s['partitions']} ({s['skipped']} finished earlier, {len(s['failures'])} failed)")
    table.add_row("rows", f"{s['rows']:,} ({s['scored']:,} scored, {s['rejected']:,} rejected)")
    table.add_row("time", f"{s['seconds']:.2f} s ({s['rows_per_s']:,.0f} rows/s)")
    table.add_row("output", s["output"])
    drift = s.get("drift")
    if drift:
        table.add_row("input drift", escape(drift["text"]))
        if drift["report"]:
            table.add_row("drift report", drift["report"])
    if s["rejected"]:
        table.add_row("rejects", f"{s['output'].rstrip('/')}/rejects/ (row, id, column, rule, reason)")
    console().print(table)


def print_status(view: Any) -> None:
    out = console()
    if view.online is not None:
        served = view.online.get("version")
        out.print(f"online service: serves [bold]{served}[/]" if served else f"[red]online: {view.online['error']}[/]")
    if view.batch:
        table = Table(title=f"batch outputs of {view.model}", title_justify="left")
        for col in ("output", "version", "rows", "at"):
            add_column(table, col)
        for b in view.batch:
            table.add_row(str(b.get("output")), str(b.get("version")), str(b.get("scored")), str(b.get("at"))[:16])
        out.print(table)
    if view.devices:
        table = Table(title=f"device cohorts of {view.model}", title_justify="left")
        for col in ("channel", "version", "devices", "unhealthy", "last heartbeat"):
            add_column(table, col)
        for c in view.cohorts:
            table.add_row(c["channel"], c["version"], str(c["devices"]), str(c["unhealthy"]), c["last_heartbeat"][:16])
        out.print(table)
        listed = status.listed_devices(view)
        table = Table(title=f"devices running {view.model}", title_justify="left")
        for col in ("device", "channel", "version", "healthy", "last heartbeat"):
            add_column(table, col)
        if len(listed) < len(view.devices):
            table.caption = f"{len(view.devices) - len(listed)} more devices are counted in their cohorts"
        for name, d in listed:
            behind = view.channels.get(str(d.get("channel"))) not in (None, d.get("version"))
            version = f"[bold red]{d.get('version')} (behind)[/]" if behind else str(d.get("version"))
            ok = (d.get("health") or {}).get("ok")
            table.add_row(name, str(d.get("channel")), version, str(ok), str(d.get("sent_at"))[:16])
        out.print(table)
    for line in view.skew:
        out.print(f"[yellow]skew:[/] {escape(line)}")
