"""Storage over fsspec: the one place to open a URL, write atomically, read, hash, and lock.

| module | what |
|---|---|
| :mod:`ferry.storage.files` | ``open_fs``, ``check_reachable``, atomic writes, publishing a directory, reads, hashes, |
| | ``link`` (a presigned HTTPS URL on an object store) |
| :mod:`ferry.storage.frames` | ``write_parquet``/``read_parquet``: tables of rows through the encryption layer |
| :mod:`ferry.storage.sealed` | encryption at rest: the envelope, the key ring, ``seal``/``unseal`` |
| :mod:`ferry.storage.rotation` | ``rotate``: every encrypted object re-encrypted under a new key, resumably |
| :mod:`ferry.storage.lease` | ``lock``: the one lock, a lease with a holder and an expiry (flock locally) |

Nothing here runs at import time.
"""

from __future__ import annotations

from ferry.storage.files import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_sealed,
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
    read_raw,
    sha256_bytes,
)
from ferry.storage.frames import read_parquet, write_parquet
from ferry.storage.lease import lock, lock_owner, read_holder

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_sealed",
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
    "read_parquet",
    "read_raw",
    "sha256_bytes",
    "write_parquet",
]
