"""The TUF repository under its old import path: :mod:`ferry.publish.tufrepo` is the module; this name stays for
callers not yet moved to it."""

from __future__ import annotations

from ferry.publish.tufrepo import *  # noqa: F403
from ferry.publish.tufrepo import __all__ as __all__
