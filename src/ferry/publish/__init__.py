"""Edge publishing: a version as a signed bundle in the TUF repository devices pull from.

| module | what lives there |
|---|---|
| :mod:`~ferry.publish.bundle` | a version's ``model.onnx`` plus a manifest, packed as a deterministic tar file |
| :mod:`~ferry.publish.tufrepo` | the TUF repository (python-tuf's metadata API) and its signing keys |
| :mod:`~ferry.publish.channels` | :func:`check_publishable` before a move, :func:`publish_moved` after it |

The names of :mod:`~ferry.publish.bundle` and :mod:`~ferry.publish.tufrepo` are loaded on first use, so moving a
channel that is not an edge one needs neither python-tuf (the ``edge`` extra) nor the time to import it.
"""

from __future__ import annotations

import importlib
from typing import Any

from ferry.publish.channels import (
    EDGE_PREFIX,
    check_publishable,
    is_edge,
    open_repository,
    publish_channel,
    publish_moved,
)

__all__ = [
    "EDGE_PREFIX",
    "Bundle",
    "KeyStore",
    "PublishResult",
    "TufRepository",
    "build_bundle",
    "check_publishable",
    "describe",
    "is_edge",
    "open_repository",
    "publish_channel",
    "publish_moved",
    "target_name",
]

_LAZY = {
    **dict.fromkeys(("Bundle", "build_bundle"), "ferry.publish.bundle"),
    **dict.fromkeys(("KeyStore", "PublishResult", "TufRepository", "describe", "target_name"), "ferry.publish.tufrepo"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ferry.publish' has no attribute {name!r}")
