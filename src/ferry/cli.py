"""The ``ferry`` command line (typer + rich)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ferry.cli_edge import edge_app
from ferry.errors import FerryError, MissingExtra
from ferry.settings import StorageSettings, TrainSettings
from ferry.summary import fmt, gate_rows, metric_rows

app = typer.Typer(
    help="ferry: retrain, gate and ship scikit-learn models to batch, online and edge.", no_args_is_help=True
)
models_app = typer.Typer(help="Inspect registered model versions.", no_args_is_help=True)
audit_app = typer.Typer(help="Inspect the audit log of channel moves.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")
app.add_typer(edge_app, name="edge")


def _out() -> Console:
    """A console made per call, so it follows the terminal (and COLUMNS) of the moment."""
    return Console()


RegistryOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--registry", envvar="FERRY_REGISTRY_URL", help="Registry root: a directory or fsspec URL."),
]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model name (default: the only one).")]  # noqa: UP045
PublishOpt = Annotated[
    bool, typer.Option("--publish/--no-publish", help="Publish the bundle when the channel is an edge/... one.")
]


def _registry(url: str | None) -> Any:
    from ferry.registry import Registry

    settings = StorageSettings()
    return Registry(
        url or settings.registry_url, lock_timeout_s=settings.lock_timeout_s, actor=settings.resolved_actor()
    )


def _add_column(table: Table, name: str) -> None:
    """Version ids are never cut or wrapped (people copy them); other cells fold when the terminal is narrow."""
    if name in ("version", "previous"):
        table.add_column(name, no_wrap=True, min_width=16)
    else:
        table.add_column(name, overflow="fold")


def _fail(exc: BaseException) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


def _one_model(registry: Any, model: str | None) -> str:
    if model:
        return model
    names = registry.models()
    if len(names) == 1:
        return str(names[0])
    if not names:
        raise FerryError(f"the registry at {registry.url} holds no models yet; run `ferry train` or `ferry demo`")
    raise FerryError(f"the registry holds several models {names}; choose one with --model")


def _retrain_flow() -> Any:
    try:
        from flows.retrain import retrain
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "prefect":
            raise MissingExtra("prefect", "prefect") from exc
        raise
    return retrain


def print_outcome(outcome: dict[str, Any]) -> None:
    """The retrain summary as rich tables."""
    if outcome.get("skipped"):
        _out().print(f"[yellow]not retrained[/]: {escape(outcome['skipped'])}")
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
    _out().print(summary)

    rows = metric_rows(outcome["metrics"], outcome.get("champion_metrics"))
    metrics = Table(title="holdout metrics", title_justify="left")
    for col in rows[0]:
        metrics.add_column(col, justify="right" if col != "metric" else "left")
    for r in rows:
        metrics.add_row(*r.values())
    _out().print(metrics)
    _print_gate(outcome["checks"])


def _print_gate(checks: list[dict[str, Any]]) -> None:
    table = Table(title="gate checks", title_justify="left")
    for col in ("check", "value", "threshold", "pass"):
        table.add_column(col, justify="right" if col == "value" else "left", overflow="fold")
    for r in gate_rows(checks, group_passing=True):
        style = "green" if r["pass"] == "PASS" else "bold red"
        table.add_row(escape(r["check"]), r["value"], escape(r["threshold"]), f"[{style}]{r['pass']}[/]")
    _out().print(table)


@app.command()
def train(
    data: Annotated[str, typer.Option("--data", help="CSV or Parquet file: a local path or any fsspec URL.")],
    schema: Annotated[str, typer.Option("--schema", help="Schema file (YAML or JSON) describing the columns.")],
    promote_to: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--promote-to", help="Channel(s) to move when the gate passes (repeatable)."),
    ] = None,
    estimator: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="hist_gradient_boosting, logistic_regression or random_forest."),
    ] = None,
    registry: RegistryOpt = None,
) -> None:
    """Run the retrain flow on your own data: validate, train, gate, register, and promote when the gate passes."""
    try:
        overrides: dict[str, Any] = {"estimator": estimator} if estimator else {}
        settings = TrainSettings(**overrides)
        outcome = _retrain_flow()(
            data=data, schema_file=schema, promote_to=promote_to, registry_url=registry, train_settings=settings
        )
    except FerryError as exc:
        raise _fail(exc) from exc
    except ValueError as exc:  # pydantic validation of an option
        raise _fail(exc) from exc
    print_outcome(outcome)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(min=2000, max=2_000_000, help="Rows in each demo batch.")] = 20_000,
    drift: Annotated[float, typer.Option(min=0.0, max=1.0, help="Drift of the second batch (0 to 1).")] = 0.8,
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo data is written.")] = Path(".ferry/demo"),
    sample_rows: Annotated[
        int, typer.Option("--sample-rows", min=300, max=20_000, help="Drifted rows each surface sees.")
    ] = 2000,
    registry: RegistryOpt = None,
) -> None:
    """One release through every surface, and the loop closed: train and serve a first model, let drifted data
    arrive online, in batch and on a device, detect it, retrain, stage the candidate as challenger, promote it after
    its window, and check that online, batch and edge answer bit for bit the same."""
    from contextlib import ExitStack

    from ferry import cli_demo
    from ferry import demo as demo_mod

    out = _out()
    schema = demo_mod.churn_schema()
    try:
        flow = _retrain_flow()
        reg = _registry(registry)
        if not cli_demo.has_extra("bentoml", "ferry_edge", "tuf"):
            raise FerryError("the demo needs every extra: uv sync --all-extras (or pip install 'ferry[online,edge]')")
        from ferry.monitor import MonitorSettings
        from ferry.rollout import RolloutSettings
        from ferry.serving import StaticHost
        from ferry.settings import EdgeSettings
        from flows.monitor import monitor

        edge = EdgeSettings()
        repo_dir = Path(edge.repo_url)
        if any("://" in u for u in (reg.url, edge.repo_url, edge.keys_dir)):
            raise FerryError("the demo runs on local directories; unset FERRY_REGISTRY_URL and FERRY_EDGE_REPO_URL")
        cli_demo.fresh_world(Path(reg.url), repo_dir, Path(edge.keys_dir), directory)
        schema_path = directory / "schema.yaml"
        schema_path.write_text(schema.dump_yaml())
        with ExitStack() as stack:
            out.rule("[bold]1. baseline data: train the first model, promote it online and to edge/stable")
            base = demo_mod.write_demo(directory / "baseline", n_rows=rows, seed=1, drift=0.0, fmt="parquet")
            first = flow(
                data=str(base),
                schema_file=str(schema_path),
                registry_url=reg.url,
                promote_to=["online/champion", "edge/stable"],
            )
            print_outcome(first)

            out.rule("[bold]2. serve it: bentoml serve, and a device syncing from a static host")
            service = stack.enter_context(cli_demo.DemoService(reg, directory))
            out.print(f"online service on {service.url} (log: {service.log})")
            drifted_path = demo_mod.write_demo(
                directory / "drifted", n_rows=rows, seed=2, drift=drift, fmt="parquet", start="2026-01-01"
            )
            frame, sample = cli_demo.sample(pd_read(drifted_path), schema, sample_rows)
            served = cli_demo.show_answers(service, sample[:3], schema, "POST /predict, three customers:")
            host = stack.enter_context(StaticHost(repo_dir))
            device = cli_demo.DemoDevice(directory / "device-1", repo_dir, host, first["model"], service)
            device.sync()

            out.rule(f"[bold]3. drifted data arrives (drift={drift}): online traffic, a batch run, a device")
            cli_demo.send_traffic(service, sample)
            out.print(f"online: {len(sample):,} drifted records answered and logged")
            cli_demo.batch_step(reg, frame, directory, "before")
            device.predict_and_report(sample[: len(sample) // 2])

            out.rule("[bold]4. the monitor flow compares production with the champion's reference")
            settings = MonitorSettings(min_rows=200)
            window = RolloutSettings(window_hours=0, min_rows=min(500, len(sample) // 2))
            found = monitor(registry_url=reg.url, settings=settings, rollout_settings=window)
            cli_demo.print_monitor(found)
            asks = [a for a in found["announcements"] if a["retrain"]]
            if not asks:
                raise FerryError("the monitor saw no drift worth a retrain; try a larger --drift")

            out.rule("[bold]5. the retrain the drift event asks for (what the automation in prefect.yaml runs)")
            summary = next(j for j in found["judgements"] if j["source"] == asks[0]["source"])
            reason = f"drift: {asks[0]['source']}: {', '.join(summary['drifted_features'])} drifted"
            second = flow(
                data=str(drifted_path),
                schema_file=str(schema_path),
                registry_url=reg.url,
                promote_to=["online/challenger", "edge/beta"],
                min_new_rows=500,
                reason=reason,
            )
            print_outcome(second)
            candidate = second.get("version")
            if not second.get("promoted"):
                raise FerryError(f"the candidate {candidate} was not staged: {second.get('reasons')}")

            out.rule("[bold]6. the observation window: the challenger shadows live traffic, then the monitor decides")
            cli_demo.wait_for_challenger(service, sample, str(candidate))
            cli_demo.send_traffic(service, sample, shadow=str(candidate))
            out.print(f"online: {len(sample):,} more records; {candidate} scored each in shadow, unseen by callers")
            decided = monitor(registry_url=reg.url, settings=settings, rollout_settings=window)
            cli_demo.print_monitor(decided)
            rollout = decided.get("rollout") or {}
            if rollout.get("decision") != "promote":
                why = "; ".join(rollout.get("reasons", []))
                raise FerryError(f"the rollout did not promote {candidate}: {rollout.get('decision')} ({why})")
            champion = reg.channel(first["model"], "online/champion")

            out.rule("[bold]7. everyone on the new champion")
            cli_demo.wait_for_version(service, sample, str(champion))
            note = "the same service, not restarted, followed the channel pointer"
            cli_demo.show_answers(service, sample[:3], schema, f"POST /predict again ({note}; was {served}):")
            device.sync()
            device.predict_and_report(sample[:300])
            output, _ = cli_demo.batch_step(reg, frame, directory, "after")
            monitor(registry_url=reg.url, settings=settings, rollout_settings=window, online_url=service.url)

            out.rule("[bold]8. parity: the same rows online, in batch and on the device")
            cli_demo.parity_step(cli_demo.surfaces_scores(service, output, device, sample, schema))
            status(registry=reg.url, online_url=service.url, api_key=service.key, model=None)
    except FerryError as exc:
        raise _fail(exc) from exc


def pd_read(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 to serve other machines.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")] = 3000,
    model: ModelOpt = None,
    channel: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--channel", "-c", help="Channel to follow (default online/champion)."),
    ] = None,
    version: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--version", help="Serve exactly this version instead of following the channel."),
    ] = None,
    registry: RegistryOpt = None,
) -> None:
    """Run the online service: `bentoml serve` of bentos/online on the model a channel points to.

    Every FERRY_ONLINE_* variable (API keys, routing, limits) applies; these options override their variables.
    """
    import os
    import sys

    from ferry import serving, storage

    try:
        reg = _registry(registry)
        env = {
            serving.REGISTRY_ENV: storage.portable_url(reg.url),  # bentoml serve runs in the service's directory
            "BENTOML_DO_NOT_TRACK": os.environ.get("BENTOML_DO_NOT_TRACK", "true"),
        }
        for name, value in (("MODEL", model), ("CHANNEL", channel), ("VERSION", version)):
            if value is not None:
                env[f"FERRY_ONLINE_{name}"] = value
        command = serving.serve_command(host, port)
        directory = serving.bento_dir()
    except FerryError as exc:
        raise _fail(exc) from exc
    _out().print(f"serving {reg.url} on http://{host}:{port} ({' '.join(command[1:])} in {directory})")
    sys.stdout.flush()
    os.chdir(directory)
    os.execve(command[0], command, {**os.environ, **env})


@app.command()
def score(
    input: Annotated[
        str, typer.Option("--input", "-i", help="CSV/Parquet file, directory or glob; path or fsspec URL.")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Output directory (path or fsspec URL) for Parquet.")],
    version: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--version", help="Pin a version id (default: the batch channel, else online/champion)."),
    ] = None,
    model: ModelOpt = None,
    batch_rows: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--batch-rows", min=1, max=4_000_000, help="Rows per record batch (bounds memory)."),
    ] = None,
    registry: RegistryOpt = None,
) -> None:
    """Score a dataset with a model version into partitioned Parquet; a rerun skips finished partitions."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ferry import batch

    try:
        settings = batch.BatchSettings() if batch_rows is None else batch.BatchSettings(batch_rows=batch_rows)
    except ValueError as exc:
        raise _fail(exc) from exc
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task("scoring", total=None)

        def on_rows(n: int) -> None:
            progress.advance(bar, n)
            t = progress.tasks[0]
            if t.total is not None and t.completed >= t.total:
                progress.update(bar, description="checking input drift")

        def on_plan(p: batch.Plan) -> None:
            progress.update(bar, total=batch.expected_rows(p))

        try:
            summary = batch.score(
                input,
                output,
                _registry(registry),
                version=version,
                model=model,
                settings=settings,
                on_plan=on_plan,
                on_rows=on_rows,
            )
            failures: dict[str, str] = {}
        except batch.PartitionsFailed as exc:
            if exc.summary is None:
                raise _fail(exc) from exc
            summary, failures = exc.summary, exc.failures
        except FerryError as exc:
            raise _fail(exc) from exc
    _print_batch(summary.to_dict())
    if failures:
        for key, why in sorted(failures.items()):
            Console(stderr=True).print(f"[bold red]failed[/] {escape(key)}: {escape(why)}")
        raise _fail(FerryError(f"{len(failures)} partition(s) failed; fix them and run the same command again"))


def _print_batch(s: dict[str, Any]) -> None:
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
    _out().print(table)


@models_app.command("list")
def models_list(model: ModelOpt = None, registry: RegistryOpt = None) -> None:
    """Every registered version, newest last, with its headline metrics and gate verdict."""
    try:
        reg = _registry(registry)
        names = [model] if model else reg.models()
        table = Table(title="model versions", title_justify="left")
        for col in ("model", "version", "created", "roc_auc", "f1", "gate", "channels"):
            _add_column(table, col)
        for name in names:
            pointers: dict[str, list[str]] = {}
            for channel, state in reg.channels(name).items():
                pointers.setdefault(state.version, []).append(channel)
            for v in reg.versions(name):
                m = v.info.get("metrics", {})
                passed = v.info.get("gate", {}).get("passed")
                table.add_row(
                    name,
                    v.id,
                    str(v.created_at)[:16].replace("T", " "),
                    fmt(m.get("roc_auc")),
                    fmt(m.get("f1")),
                    "[green]passed[/]" if passed else "[red]rejected[/]",
                    ", ".join(sorted(pointers.get(v.id, []))),
                )
    except FerryError as exc:
        raise _fail(exc) from exc
    _out().print(table)


@models_app.command("show")
def models_show(
    version: Annotated[str, typer.Argument(help="Version id (a unique prefix is enough).")],
    registry: RegistryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """One version: metrics, gate result, lineage and where its files are."""
    try:
        reg = _registry(registry)
        v = reg.get(version)
        gate = json.loads(reg.read_bytes(v, "gate.json"))
    except FerryError as exc:
        raise _fail(exc) from exc
    if as_json:
        _out().print_json(
            data={"id": v.id, "model": v.model, "created_at": str(v.created_at), "info": v.info, "gate": gate}
        )
        return
    head = Table(title=f"{v.model} version {v.id}", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    lineage = v.info.get("lineage", {})
    head.add_row("created", str(v.created_at))
    head.add_row("gate", "[green]passed[/]" if gate["passed"] else "[red]rejected[/]")
    for reason in gate["reasons"]:
        head.add_row("why", f"[red]{escape(reason)}[/]")
    head.add_row("champion compared", gate.get("champion") or "none")
    head.add_row("data", f"{lineage.get('data', {}).get('url')} sha256 {lineage.get('data', {}).get('sha256')}")
    head.add_row("code revision", str(lineage.get("code_revision")))
    head.add_row("estimator", f"{lineage.get('estimator')} {lineage.get('params')}")
    head.add_row("libraries", ", ".join(f"{k} {val}" for k, val in lineage.get("libraries", {}).items()))
    head.add_row("files", reg.version_url(v))
    _out().print(head)
    rows = metric_rows(v.info.get("metrics", {}))
    metrics = Table(title="holdout metrics", title_justify="left")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for r in rows:
        metrics.add_row(r["metric"], r["candidate"])
    _out().print(metrics)
    _print_gate(gate["checks"])


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
        reg = _registry(registry)
        rec = reg.promote(version, channel, reason=reason, force=force)
    except FerryError as exc:
        raise _fail(exc) from exc
    _out().print(
        f"[green]{rec.channel}[/]: {rec.from_version or '(none)'} -> [bold]{rec.to_version}[/] "
        f"(audit record {rec.seq}, by {rec.actor})"
    )
    if publish:
        _publish_edge(reg, rec.model, rec.channel)


def _publish_edge(registry: Any, model: str, channel: str) -> None:
    """Publish an edge channel right after it moved; other channels need nothing."""
    if not channel.startswith("edge/"):
        return
    try:
        from ferry.publish import open_repository, publish_channel

        result = publish_channel(registry, open_repository(), model, channel)
    except ImportError as exc:
        raise _fail(MissingExtra("edge", exc.name or "tuf")) from exc
    except FerryError as exc:
        Console(stderr=True).print(
            f"[bold red]error:[/] {channel} moved, but its bundle was not published: {exc}; "
            f"fix it and run `ferry edge publish --model {model} --channel {channel}`"
        )
        raise typer.Exit(code=2) from exc
    state = "published" if result.changed else "already published"
    _out().print(f"{channel}: {state} {result.target} (sha256 {result.sha256[:16]}, {result.length} B)")


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
        reg = _registry(registry)
        rec = reg.rollback(channel, model=_one_model(reg, model), reason=reason)
    except FerryError as exc:
        raise _fail(exc) from exc
    _out().print(
        f"[yellow]{rec.channel}[/]: {rec.from_version} -> [bold]{rec.to_version}[/] "
        f"(audit record {rec.seq}, by {rec.actor})"
    )
    if publish:
        _publish_edge(reg, rec.model, rec.channel)


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
    from ferry import whereabouts

    try:
        reg = _registry(registry)
        names = [model] if model else reg.models()
        table = Table(title=f"channels in {reg.url}", title_justify="left")
        for col in ("model", "channel", "version", "roc_auc", "moved at", "previous"):
            _add_column(table, col)
        views = []
        for name in names:
            for channel, state in sorted(reg.channels(name).items()):
                v = reg.get(state.version, model=name)
                table.add_row(
                    name,
                    channel,
                    state.version,
                    fmt(v.info.get("metrics", {}).get("roc_auc")),
                    str(state.moved_at)[:16].replace("T", " "),
                    state.history[-1] if state.history else "",
                )
            views.append(whereabouts.collect(reg, name, online_url=online_url, api_key=api_key))
    except FerryError as exc:
        raise _fail(exc) from exc
    if not table.row_count:
        _out().print("no channel points anywhere yet: run `ferry demo` or `ferry train`")
        return
    _out().print(table)
    for view in views:
        _print_whereabouts(view)


def _print_whereabouts(view: Any) -> None:
    out = _out()
    if view.online is not None:
        served = view.online.get("version")
        out.print(f"online service: serves [bold]{served}[/]" if served else f"[red]online: {view.online['error']}[/]")
    if view.batch:
        table = Table(title=f"batch outputs of {view.model}", title_justify="left")
        for col in ("output", "version", "rows", "at"):
            _add_column(table, col)
        for b in view.batch:
            table.add_row(str(b.get("output")), str(b.get("version")), str(b.get("scored")), str(b.get("at"))[:16])
        out.print(table)
    if view.devices:
        table = Table(title=f"devices running {view.model}", title_justify="left")
        for col in ("device", "channel", "version", "healthy", "last heartbeat"):
            _add_column(table, col)
        for name, d in sorted(view.devices.items()):
            behind = view.channels.get(str(d.get("channel"))) not in (None, d.get("version"))
            version = f"[bold red]{d.get('version')} (behind)[/]" if behind else str(d.get("version"))
            ok = (d.get("health") or {}).get("ok")
            table.add_row(name, str(d.get("channel")), version, str(ok), str(d.get("sent_at"))[:16])
        out.print(table)
    for line in view.skew:
        out.print(f"[yellow]skew:[/] {escape(line)}")


@audit_app.command("verify")
def audit_verify(model: ModelOpt = None, registry: RegistryOpt = None) -> None:
    """Check the hash chain of the audit log; name the first bad record. Exits 1 when the log is broken."""
    try:
        reg = _registry(registry)
        names = [model] if model else reg.models()
        broken = False
        for name in names:
            report = reg.verify_audit(name)
            if report.ok:
                _out().print(f"[green]ok[/] {name}: {report.n_records} records, hash chain intact")
            else:
                broken = True
                _out().print(
                    f"[bold red]BROKEN[/] {name}: first bad record at line {report.first_bad}: {report.problem}"
                )
    except FerryError as exc:
        raise _fail(exc) from exc
    if broken:
        raise typer.Exit(code=1)


def main() -> None:  # pragma: no cover - console script entry
    app()
