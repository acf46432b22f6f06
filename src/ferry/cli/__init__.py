"""The ``ferry`` command line (typer + rich): one module per command group.

| module | what lives there |
|---|---|
| :mod:`~ferry.cli.app` | the root command and its ``models``, ``audit`` and ``keys`` groups |
| :mod:`~ferry.cli.common` | the console, the shared options, the registry, how an error ends a command |
| :mod:`~ferry.cli.views` | the rich tables: a retrain's outcome, gate checks, a batch run, what runs where |
| :mod:`~ferry.cli.train` | ``ferry train`` (its inputs checked first: :mod:`ferry.train.preflight`) |
| :mod:`~ferry.cli.register` | ``ferry register``: a pipeline fitted elsewhere |
| :mod:`~ferry.cli.demo` | ``ferry demo``; its steps are :mod:`~ferry.cli.demo_steps` |
| :mod:`~ferry.cli.serve` | ``ferry serve`` |
| :mod:`~ferry.cli.score` | ``ferry score`` |
| :mod:`~ferry.cli.models` | ``ferry models list`` / ``show`` |
| :mod:`~ferry.cli.channels` | ``ferry promote`` / ``rollback`` |
| :mod:`~ferry.cli.status` | ``ferry status`` |
| :mod:`~ferry.cli.audit` | ``ferry audit verify`` / ``sign`` |
| :mod:`~ferry.cli.keys` | ``ferry keys create`` / ``list`` / ``revoke``: the online service's API keys |
| :mod:`~ferry.cli.datakeys` | ``ferry keys data-key`` / ``rotate`` / ``decrypt``: the key of encryption at rest |
| :mod:`~ferry.cli.governance` | ``ferry housekeeping``, ``ferry forget`` |
| :mod:`~ferry.cli.edge` | ``ferry edge publish`` / ``status`` / ``resign`` / ``rotate`` |
| :mod:`~ferry.cli.processes` | the processes the demo and ``ferry serve`` start: ``bentoml serve``, a static host |
| :mod:`~ferry.cli.parity` | the same rows through online, batch and edge, compared bit for bit |

The CLI is the one part of ``ferry`` allowed to reach the Prefect flows (``ferry_flows``), and it does so inside the
commands that run them. Every command imports what it uses inside its own function, so ``ferry --help`` imports
typer and rich and nothing else.
"""

from __future__ import annotations

import atexit
import os
import sys

from ferry.cli import (
    audit,
    channels,
    datakeys,
    demo,
    governance,
    keys,
    models,
    register,
    score,
    serve,
    status,
    train,
)
from ferry.cli.app import app
from ferry.cli.edge import edge_app

__all__ = ["app", "main"]

app.add_typer(edge_app, name="edge")
# imported for their registration
_COMMANDS = (audit, channels, datakeys, demo, governance, keys, models, register, score, serve, status, train)


def main() -> None:  # pragma: no cover - console script entry
    """The ``ferry`` console script.

    After a command that ran a Prefect flow, the process leaves without tearing the interpreter down: the exit
    handlers run (Prefect's log and event flush, temporary directories, logging), then ``os._exit``. Tearing down
    the modules of Prefect, Evidently, scikit-learn and pandas took about 2 s of every ``ferry train``
    (``bench/startup.py``); nothing of ferry's is left to write by then.
    """
    # A flow run without PREFECT_API_URL starts a temporary Prefect server, which Prefect waits 20 s for: a busy
    # machine takes longer, so ferry waits up to 2 min unless told otherwise.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    try:
        app()
        code: object = 0
    except Exception as exc:  # a wrong FERRY_* setting: one line naming it, not a traceback
        pydantic = sys.modules.get("pydantic")  # not imported by ``--help``, and then nothing raised this
        if pydantic is None or not isinstance(exc, pydantic.ValidationError):
            raise
        from ferry.cli.common import fail

        code = fail(exc).exit_code
        if "prefect" not in sys.modules:
            raise SystemExit(code) from None
    except SystemExit as exc:
        code = exc.code
        if "prefect" not in sys.modules:
            raise
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)
