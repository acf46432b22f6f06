"""The process helpers under their old import path: :mod:`ferry.cli.processes` is the module; this name stays for
callers not yet moved to it."""

from __future__ import annotations

from ferry.cli.processes import *  # noqa: F403
from ferry.cli.processes import __all__ as __all__
