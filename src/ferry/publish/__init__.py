"""Edge publishing: a version as a signed bundle in the TUF repository devices pull from.

| module | what lives there |
|---|---|
| :mod:`~ferry.publish.bundle` | a version's ``model.onnx`` plus a manifest, packed as a deterministic tar file |
| :mod:`~ferry.publish.tufrepo` | the TUF repository (python-tuf's metadata API) and its signing keys |
| :mod:`~ferry.publish.channels` | publishing an edge channel, and moving a channel then publishing it |
"""

from __future__ import annotations

from ferry.publish.bundle import BUNDLE_FORMAT, GOLDEN_ROWS, MEMBERS, Bundle, build_bundle
from ferry.publish.channels import open_repository, publish_channel
from ferry.publish.tufrepo import (
    DEFAULT_EXPIRY,
    ROLES,
    SERIALIZER,
    KeyStore,
    PublishResult,
    TufRepository,
    check_thresholds,
    describe,
    target_name,
)

__all__ = [
    "BUNDLE_FORMAT",
    "DEFAULT_EXPIRY",
    "GOLDEN_ROWS",
    "MEMBERS",
    "ROLES",
    "SERIALIZER",
    "Bundle",
    "KeyStore",
    "PublishResult",
    "TufRepository",
    "build_bundle",
    "check_thresholds",
    "describe",
    "open_repository",
    "publish_channel",
    "target_name",
]
