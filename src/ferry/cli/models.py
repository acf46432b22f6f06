"""``ferry models list``, ``show``, ``card`` and ``explain``: registered versions, metrics, gate result, lineage, and
why a version answers what it does for given rows."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ferry.cli.app import models_app
from ferry.cli.common import ModelOpt, RegistryOpt, add_column, console, fail, open_registry
from ferry.errors import FerryError
from ferry.registry import ModelVersion, Registry
from ferry.schema import Schema, Task

if TYPE_CHECKING:
    from ferry.settings import GateSettings


@models_app.command("list")
def models_list(model: ModelOpt = None, registry: RegistryOpt = None) -> None:
    """Every registered version, newest last, with its task, the task's primary metric on the holdout (the one the
    gate compares with the champion, ``FERRY_GATE_*PRIMARY_METRIC``) and the gate verdict."""
    from ferry.settings import GateSettings
    from ferry.train.summary import fmt

    try:
        gate_settings = GateSettings()
        reg = open_registry(registry)
        names = [model] if model else reg.models()
        table = Table(title="model versions", title_justify="left")
        for col in ("model", "version", "created", "task", "metric", "value", "gate", "channels"):
            add_column(table, col)
        for name in names:
            pointers: dict[str, list[str]] = {}
            for channel, state in reg.channels(name).items():
                pointers.setdefault(state.version, []).append(channel)
            for v in reg.versions(name):
                m = v.info.get("metrics", {})
                passed = v.info.get("gate", {}).get("passed")
                task = task_of(reg, v)
                metric = primary_metric(task, gate_settings)
                table.add_row(
                    name,
                    v.id,
                    str(v.created_at)[:16].replace("T", " "),
                    task,
                    metric,
                    fmt(m.get(metric)),
                    "[green]passed[/]" if passed else "[red]rejected[/]",
                    ", ".join(sorted(pointers.get(v.id, []))),
                )
    except FerryError as exc:
        raise fail(exc) from exc
    console().print(table)


def task_of(registry: Registry, version: ModelVersion) -> Task:
    """The version's task, from the schema it was trained on."""
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")), source="schema.json")
    return schema.kind


def primary_metric(task: Task, settings: GateSettings) -> str:
    """The metric the gate compares for ``task`` (its direction: see ``ferry.train.metrics``)."""
    from ferry.train.metrics import primary_metric as metric_of

    return metric_of(task, settings)


@models_app.command("show")
def models_show(
    version: Annotated[str, typer.Argument(help="Version id (a unique prefix is enough).")],
    registry: RegistryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """One version: metrics, gate result, lineage and where its files are."""
    from ferry.cli.views import print_gate
    from ferry.settings import GateSettings
    from ferry.train.summary import fmt, metric_rows

    try:
        reg = open_registry(registry)
        v = reg.get(version)
        gate = json.loads(reg.read_bytes(v, "gate.json"))
    except FerryError as exc:
        raise fail(exc) from exc
    if as_json:
        console().print_json(
            data={"id": v.id, "model": v.model, "created_at": str(v.created_at), "info": v.info, "gate": gate}
        )
        return
    head = Table(title=f"{v.model} version {v.id}", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    lineage = v.info.get("lineage", {})
    head.add_row("created", str(v.created_at))
    task = task_of(reg, v)
    metric = primary_metric(task, GateSettings())
    head.add_row("task", f"{task} (primary metric {metric}: {fmt(v.info.get('metrics', {}).get(metric))})")
    head.add_row("gate", "[green]passed[/]" if gate["passed"] else "[red]rejected[/]")
    for reason in gate["reasons"]:
        head.add_row("why", f"[red]{escape(reason)}[/]")
    head.add_row("champion compared", gate.get("champion") or "none")
    head.add_row("data", f"{lineage.get('data', {}).get('url')} sha256 {lineage.get('data', {}).get('sha256')}")
    head.add_row("code revision", str(lineage.get("code_revision")))
    head.add_row("estimator", f"{lineage.get('estimator')} {lineage.get('params')}")
    head.add_row("libraries", ", ".join(f"{k} {val}" for k, val in lineage.get("libraries", {}).items()))
    head.add_row("files", reg.version_url(v))
    console().print(head)
    rows = metric_rows(v.info.get("metrics", {}))
    metrics = Table(title="holdout metrics", title_justify="left")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for r in rows:
        metrics.add_row(r["metric"], r["candidate"])
    console().print(metrics)
    print_gate(gate["checks"])


@models_app.command("card")
def models_card(
    version: Annotated[str, typer.Argument(help="Version id (a unique prefix is enough).")],
    registry: RegistryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the card as JSON (model_card.json).")] = False,
) -> None:
    """A version's model card: intended use, training data, metrics beside the champion's, the gate, behaviour
    tests, known limits and lineage (built from its evidence for versions registered before cards existed)."""
    from rich.markdown import Markdown

    from ferry.governance import cards

    try:
        reg = open_registry(registry)
        v = reg.get(version)

        def read(name: str) -> bytes | None:
            return reg.read_bytes(v, name) if name in v.files else None

        stored = read(cards.CARD_JSON)
        card = json.loads(stored) if stored is not None else cards.build(read)
    except FerryError as exc:
        raise fail(exc) from exc
    if as_json:
        console().print_json(data={"version": v.id, **card})
        return
    console().print(Markdown(cards.render(card, version=v.id)))


def _row_records(path: str, max_rows: int) -> list[Any]:
    """The records of a row file: JSON (one record or a list of them), else CSV/Parquet as ``ferry score`` reads."""
    from ferry.data import read_table
    from ferry.errors import DataFormatError
    from ferry.online.records import to_records

    if path.lower().endswith(".json"):
        try:
            with open(path, encoding="utf-8") as fh:
                payload = json.load(fh)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}: not a readable JSON file of records ({exc})") from None
    else:
        frame = read_table(path)
        payload = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return list(to_records(payload, max_records=max_rows)[0])


@models_app.command("explain")
def models_explain(
    version: Annotated[str, typer.Argument(help="Version id (a unique prefix is enough).")],
    row_file: Annotated[
        str, typer.Option("--row-file", help="The row(s) to explain: CSV, Parquet or JSON records (one or a list).")
    ],
    out: Annotated[
        str, typer.Option("--out", help="Where to write the waterfall plot: a .svg or .png file.")
    ] = "explanation.svg",
    target: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--class", help="Explain this class's probability (default: the class predicted per row)."),
    ] = None,
    top_k: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--top-k", help="Features named per row (default: FERRY_EXPLAIN_TOP_K, at most every feature)."),
    ] = None,
    registry: RegistryOpt = None,
) -> None:
    """Why a version answers what it does for the row(s) in a file: prints each row's explanation as JSON (the same
    numbers as ``POST /explain``) and writes the waterfall plot of its top features to ``--out``."""
    from pathlib import Path

    from ferry.explain import ExplainSettings, load_explainer, records, waterfall
    from ferry.explain.pictures import FORMATS
    from ferry.online.records import Served, prepare

    fmt = Path(out).suffix.lower().lstrip(".")
    try:
        if fmt not in FORMATS:
            raise FerryError(f"--out {out}: the plot is written as .svg or .png; name the file so")
        settings = ExplainSettings()
        reg = open_registry(registry)
        v = reg.get(version)
        explainer = load_explainer(reg, v)
        rows = _row_records(row_file, min(settings.max_rows, MAX_PLOT_ROWS))
        inputs = prepare(rows, Served.of(explainer.schema))
        k = min(settings.top_k, len(explainer.features)) if top_k is None else top_k
        found = records(explainer.explain(inputs, target=target, top_k=k))
        picture = waterfall(found, top_k=k, title=f"{v.model} {v.id}", fmt=fmt)
        Path(out).write_bytes(picture)
    except (FerryError, OSError) as exc:
        raise fail(exc) from exc
    typer.echo(json.dumps(found, indent=2))
    Console(stderr=True).print(f"waterfall of {len(found)} row(s) written to {escape(out)}")


MAX_PLOT_ROWS = 20
"""Most rows ``ferry models explain`` takes from one file: one waterfall each, one under another."""
