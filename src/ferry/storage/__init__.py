"""Storage over fsspec: the one place to open a URL, write atomically, read, hash, and lock.

| module | what |
|---|---|
| :mod:`ferry.storage.files` | ``open_fs``, ``check_reachable``, atomic writes, publishing a directory, reads, hashes, |
| | ``link`` (a presigned HTTPS URL on an object store) |
| :mod:`ferry.storage.lease` | ``lock``: the one lock, a lease with a holder and an expiry (flock locally) |

Nothing here runs at import time.
"""

from __future__ import annotations

from ferry.storage.files import (
    atomic_write,
    atomic_write_bytes,
    check_reachable,
    exists,
    fsync_dir,
    is_local,
    link,
    local_fs,
    open_fs,
    portable_url,
    publish_dir,
    read_bytes,
    sha256_bytes,
)
from ferry.storage.lease import lock, lock_owner, read_holder

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "check_reachable",
    "exists",
    "fsync_dir",
    "is_local",
    "link",
    "local_fs",
    "lock",
    "lock_owner",
    "open_fs",
    "portable_url",
    "publish_dir",
    "read_bytes",
    "read_holder",
    "sha256_bytes",
]
