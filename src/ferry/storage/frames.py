"""Tables of rows as Parquet files, written and read through the encryption layer (:mod:`ferry.storage.sealed`).

A run directory's data copies, the monitor's gathered rows, and any other Parquet file that holds rows of data go
through :func:`write_parquet` (atomic, encrypted at rest when a key is set) and :func:`read_parquet` (which reads
encrypted and plaintext files alike). ``fs`` defaults to the local filesystem. Nothing here runs at import time.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferry.storage.files import atomic_write_sealed, local_fs, read_bytes

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_parquet", "write_parquet"]


def write_parquet(path: str | Path, frame: pd.DataFrame, *, fs: Any = None) -> None:
    """``frame`` as a Parquet file at ``path``, never half-written, encrypted when a key is set."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_sealed(fs if fs is not None else local_fs(), str(path), buffer.getvalue())


def read_parquet(path: str | Path, *, columns: list[str] | None = None, fs: Any = None) -> pd.DataFrame:
    """The Parquet file at ``path`` (encrypted or not) as a DataFrame, with only ``columns`` when given."""
    import pandas as pd

    data = read_bytes(fs if fs is not None else local_fs(), str(path))
    return pd.read_parquet(io.BytesIO(data), columns=columns)
