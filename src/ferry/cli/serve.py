"""``ferry serve``: the online service, ``bentoml serve`` of ``bentos/online`` on a channel's version."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ferry.cli.app import app
from ferry.cli.common import ModelOpt, RegistryOpt, console, fail, open_registry
from ferry.errors import FerryError


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

    from ferry import storage
    from ferry.cli import processes as serving

    try:
        reg = open_registry(registry)
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
        raise fail(exc) from exc
    console().print(f"serving {reg.url} on http://{host}:{port} ({' '.join(command[1:])} in {directory})")
    sys.stdout.flush()
    os.chdir(directory)
    os.execve(command[0], command, {**os.environ, **env})
