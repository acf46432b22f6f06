"""``ferry register``: a scikit-learn Pipeline fitted elsewhere, through ONNX export, parity, the gate against the
champion on your holdout, then register and promote (:mod:`ferry.train.byo`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ferry.cli.app import app
from ferry.cli.common import RegistryOpt, console, fail, open_registry
from ferry.errors import FerryError


@app.command()
def register(
    pipeline: Annotated[str, typer.Option("--pipeline", help="The fitted Pipeline: .skops (or a pickle, see below).")],
    schema: Annotated[str, typer.Option("--schema", help="Schema file (YAML or JSON) of its columns and target.")],
    data: Annotated[str, typer.Option("--data", help="Labelled holdout (CSV or Parquet) the gate judges it on.")],
    promote_to: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--promote-to", help="Channel(s) to move when the gate passes (default online/champion)."),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Load a pickle (.pkl/.pickle/.joblib): it can run code. Recorded."),
    ] = False,
    registry: RegistryOpt = None,
) -> None:
    """Register a pipeline fitted elsewhere: the same evidence as a retrain, then promote when the gate passes."""
    from ferry.cli.views import print_outcome
    from ferry.train import byo

    channels = promote_to or ["online/champion"]
    try:
        reg = open_registry(registry)
        outcome = byo.register_pipeline(pipeline, schema, data, reg, channels, trust_pickle=trust_pickle)
    except FerryError as exc:
        raise fail(exc) from exc
    print_outcome(outcome)
    for published in outcome["published"]:
        console().print(f"published {published}")
    if not outcome["gate_passed"]:
        raise typer.Exit(code=1)
