"""The root ``ferry`` command and its groups; the command modules register themselves on these."""

from __future__ import annotations

import typer

__all__ = ["app", "audit_app", "keys_app", "models_app"]

app = typer.Typer(
    help="ferry: retrain, gate and ship scikit-learn models to batch, online and edge.", no_args_is_help=True
)
models_app = typer.Typer(help="Inspect registered model versions.", no_args_is_help=True)
audit_app = typer.Typer(help="Inspect the audit log of channel moves.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys of the online service (create, list, revoke) and the data key of encryption at rest (data-key, "
    "rotate, decrypt).",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
