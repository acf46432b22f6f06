"""``ferry serve``: the online service, ``bentoml serve`` of ``bentos/online`` on a channel's version."""

from __future__ import annotations

from pathlib import Path
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
    ssl_certfile: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="PEM certificate (chain): serve HTTPS, with --ssl-keyfile. [FERRY_ONLINE_SSL_CERTFILE]"),
    ] = None,
    ssl_keyfile: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="PEM private key of the certificate. [FERRY_ONLINE_SSL_KEYFILE]"),
    ] = None,
    ssl_ca_certs: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="PEM CA file: require client certificates it signed (mTLS). [FERRY_ONLINE_SSL_CA_CERTS]"),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes (BentoML's workers); each holds its own model, logs, limits and metrics.",
        ),
    ] = 1,
) -> None:
    """Run the online service: `bentoml serve` of bentos/online on the model a channel points to.

    Every FERRY_ONLINE_* variable (API keys, routing, limits, TLS) applies; these options override their variables.
    """
    import os
    import sys

    from ferry import storage
    from ferry.cli import processes as serving
    from ferry.online import tls as online_tls
    from ferry.online.settings import OnlineSettings

    try:
        settings = OnlineSettings()
        tls = online_tls.check(
            ssl_certfile or settings.ssl_certfile,
            ssl_keyfile or settings.ssl_keyfile,
            ssl_ca_certs or settings.ssl_ca_certs,
        )
        reg = open_registry(registry)
        env = {
            serving.REGISTRY_ENV: storage.portable_url(reg.url),  # bentoml serve runs in the service's directory
            "BENTOML_DO_NOT_TRACK": os.environ.get("BENTOML_DO_NOT_TRACK", "true"),
            **serving.workers_env(workers),
        }
        for name, value in (("MODEL", model), ("CHANNEL", channel), ("VERSION", version)):
            if value is not None:
                env[f"FERRY_ONLINE_{name}"] = value
        command = serving.serve_command(host, port, tls)
        directory = serving.bento_dir()
    except FerryError as exc:
        raise fail(exc) from exc
    scheme = "https" if tls else "http"
    where = f"{scheme}://{host}:{port} with {workers} worker(s)"
    console().print(f"serving {reg.url} on {where} ({' '.join(command[1:])} in {directory})")
    sys.stdout.flush()
    os.chdir(directory)
    os.execve(command[0], command, {**os.environ, **env})
