"""``ferry score``: batch scoring of a dataset into partitioned Parquet (with ``--explain``, each row's explanation
beside its score), with a progress bar of rows."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ferry.cli.app import app
from ferry.cli.common import ModelOpt, RegistryOpt, fail, open_registry
from ferry.errors import FerryError


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
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Add each row's explanation: explained_class, explained_value, base_value, attribution_<feature> "
            "per feature and top_1..top_K.",
        ),
    ] = False,
    top_k: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--top-k", help="Features named per row with --explain (default FERRY_EXPLAIN_TOP_K)."),
    ] = None,
    explain_class: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--explain-class", help="Class explained with --explain (default: the class predicted per row)."),
    ] = None,
) -> None:
    """Score a dataset with a model version into partitioned Parquet; a rerun skips finished partitions."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ferry import batch
    from ferry.cli.views import print_batch

    try:
        settings = batch.BatchSettings() if batch_rows is None else batch.BatchSettings(batch_rows=batch_rows)
        if explain:
            from ferry.explain import ExplainSettings

            ExplainSettings()  # a wrong FERRY_EXPLAIN_* setting is said before anything runs
    except ValueError as exc:
        raise fail(exc) from exc
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
                open_registry(registry),
                version=version,
                model=model,
                settings=settings,
                on_plan=on_plan,
                on_rows=on_rows,
                explain=explain,
                top_k=top_k,
                explain_class=explain_class,
            )
            failures: dict[str, str] = {}
        except batch.PartitionsFailed as exc:
            if exc.summary is None:
                raise fail(exc) from exc
            summary, failures = exc.summary, exc.failures
        except FerryError as exc:
            raise fail(exc) from exc
    print_batch(summary.to_dict())
    if summary.explain is not None:
        Console().print(f"explanations: {escape(batch.describe_options(summary.explain))}")
    if failures:
        for key, why in sorted(failures.items()):
            Console(stderr=True).print(f"[bold red]failed[/] {escape(key)}: {escape(why)}")
        raise fail(FerryError(f"{len(failures)} partition(s) failed; fix them and run the same command again"))
