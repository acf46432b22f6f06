"""Edge bundles under their old import path: :mod:`ferry.publish.bundle` is the module; this name stays for callers
not yet moved to it."""

from __future__ import annotations

from ferry.publish.bundle import *  # noqa: F403
from ferry.publish.bundle import __all__ as __all__
from ferry.storage import sha256_bytes as sha256_bytes
