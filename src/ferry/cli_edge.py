"""``ferry edge`` under its old import path: :mod:`ferry.cli.edge` is the module; this name stays for callers not
yet moved to it."""

from __future__ import annotations

from ferry.cli.edge import edge_app as edge_app

__all__ = ["edge_app"]
