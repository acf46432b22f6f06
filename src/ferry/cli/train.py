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
        typer.Option(help="hist_gradient_boosting, logistic_regression or random_forest."),
    ] = None,
    registry: RegistryOpt = None,
) -> None:
    """Run the retrain flow on your own data: validate, train, gate, register, and promote when the gate passes."""
    from ferry.cli.views import print_outcome
    from ferry.settings import TrainSettings

    try:
        overrides: dict[str, Any] = {"estimator": estimator} if estimator else {}
        settings = TrainSettings(**overrides)
        outcome = retrain_flow()(
            data=data, schema_file=schema, promote_to=promote_to, registry_url=registry, train_settings=settings
        )
    except FerryError as exc:
        raise fail(exc) from exc
    except ValueError as exc:  # pydantic validation of an option
        raise fail(exc) from exc
    print_outcome(outcome)
