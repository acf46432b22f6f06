"""``ferry train``: the retrain flow on your own data."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ferry.cli.app import app
from ferry.cli.common import RegistryOpt, fail, retrain_flow
from ferry.errors import FerryError


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
        typer.Option(
            help="hist_gradient_boosting or random_forest (every task), logistic_regression (classes), ridge "
            "(regression)."
        ),
    ] = None,
    estimator_config: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="YAML/JSON file naming a scikit-learn estimator by import path, with params and a grid."),
    ] = None,
    registry: RegistryOpt = None,
) -> None:
    """Run the retrain flow on your own data: validate, train, gate, register, and promote when the gate passes.

    The schema, the data and the estimator are checked first, before any Prefect server starts.
    """
    from ferry.cli.common import console
    from ferry.cli.views import print_outcome
    from ferry.settings import TrainSettings
    from ferry.train.preflight import preflight

    try:
        overrides: dict[str, Any] = {"estimator": estimator} if estimator else {}
        if estimator_config:
            overrides["estimator_config"] = estimator_config
        settings = TrainSettings(**overrides)
        checked = preflight(data, schema, settings)
        if checked.task_note:
            console().print(checked.task_note, highlight=False, soft_wrap=True)
        outcome = retrain_flow()(
            data=data, schema_file=schema, promote_to=promote_to, registry_url=registry, train_settings=settings
        )
    except FerryError as exc:
        raise fail(exc) from exc
    except ValueError as exc:  # pydantic validation of an option
        raise fail(exc) from exc
    print_outcome(outcome)
