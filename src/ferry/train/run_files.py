"""Small helpers for the files a retrain run writes: JSON and Parquet written atomically, skops for pipelines."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from ferry import storage
from ferry.errors import RegistryError
from ferry.schema import Schema

__all__ = [
    "TRUSTED_TYPES",
    "load_pipeline",
    "read_json",
    "run_schema",
    "save_pipeline",
    "write_atomic",
    "write_json",
    "write_parquet",
]

#: Types beyond skops' defaults that a ferry pipeline may hold. Anything else is refused on load.
TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]


def _finite(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so it is never half-written (:func:`ferry.storage.atomic_write_bytes`)."""
    storage.atomic_write_bytes(storage.local_fs(), str(path), data)
    return path


def write_json(path: Path, obj: Any) -> Path:
    return write_atomic(path, json.dumps(_finite(obj), indent=2, sort_keys=True, default=str).encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` to ``path`` as Parquet, never half-written (:func:`ferry.storage.atomic_write`)."""
    storage.atomic_write(storage.local_fs(), str(path), lambda fh: frame.to_parquet(fh, index=False))
    return path


def save_pipeline(pipeline: Pipeline, path: Path) -> Path:
    import skops.io as sio

    return write_atomic(path, sio.dumps(pipeline))


def load_pipeline(path: Path) -> Pipeline:
    """Load a skops file, trusting only scikit-learn/numpy types ferry pipelines are made of."""
    import skops.io as sio

    data = path.read_bytes()
    unknown = [t for t in sio.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
    if unknown:
        raise RegistryError(f"{path} holds types ferry does not trust: {unknown}; refusing to load it")
    obj = sio.loads(data, trusted=TRUSTED_TYPES)
    if not isinstance(obj, Pipeline):
        raise RegistryError(f"{path} does not hold a scikit-learn Pipeline but a {type(obj).__name__}")
    return obj


def run_schema(run_dir: Path) -> Schema:
    """The settled schema a run's ingest wrote (``schema.json``)."""
    return Schema.from_dict(read_json(run_dir / "schema.json"), source=str(run_dir / "schema.json"))
