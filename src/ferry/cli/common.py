"""What every command shares: the console, the registry and model options, and how errors end a command.

Nothing heavy is imported here: each command imports what it uses inside its own function, so ``ferry --help``
starts in a fraction of a second.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ferry.errors import FerryError, MissingExtra


def console() -> Console:
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


def open_registry(url: str | None) -> Any:
    from ferry.registry import Registry
    from ferry.settings import StorageSettings

    settings = StorageSettings()
    return Registry(
        url or settings.registry_url,
        storage_options=settings.storage_options,
        lock_timeout_s=settings.lock_timeout_s,
        lock_lease_s=settings.lock_lease_s,
        actor=settings.resolved_actor(),
    )


def add_column(table: Table, name: str) -> None:
    """Version ids are never cut or wrapped (people copy them); other cells fold when the terminal is narrow."""
    if name in ("version", "previous"):
        table.add_column(name, no_wrap=True, min_width=16)
    else:
        table.add_column(name, overflow="fold")


def fail(exc: BaseException) -> typer.Exit:
    """Print ``exc`` as one error line (a wrong setting names its environment variable); exit code 2."""
    from pydantic import ValidationError

    from ferry.settings import explain

    Console(stderr=True).print(f"[bold red]error:[/] {explain(exc) if isinstance(exc, ValidationError) else exc}")
    return typer.Exit(code=2)


def one_model(registry: Any, model: str | None) -> str:
    if model:
        return model
    names = registry.models()
    if len(names) == 1:
        return str(names[0])
    if not names:
        raise FerryError(f"the registry at {registry.url} holds no models yet; run `ferry train` or `ferry demo`")
    raise FerryError(f"the registry holds several models {names}; choose one with --model")


def retrain_flow() -> Any:
    try:
        from ferry_flows.retrain import retrain
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "prefect":
            raise MissingExtra("prefect", "prefect") from exc
        raise
    return retrain
