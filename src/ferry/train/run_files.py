"""Small helpers for the files a retrain run writes: JSON and Parquet written atomically, skops for pipelines.

The data copies (Parquet) are encrypted at rest when a key is set, and the model files (skops, ONNX) when models are
too (:mod:`ferry.storage.sealed`); their readers here read both kinds."""

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
    "read_model",
    "read_parquet",
    "run_schema",
    "save_pipeline",
    "write_atomic",
    "write_json",
    "write_model",
    "write_parquet",
    "write_reference",
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
    """Write ``frame`` to ``path`` as Parquet, never half-written, encrypted when a key is set."""
    storage.write_parquet(path, frame)
    return path


def write_reference(run_dir: Path, reference: pd.DataFrame, schema: Schema) -> Path:
    """The version's reference sample (``reference.parquet``, for drift checks) and the explanation file drawn from
    it (``explain.npz``: background and coalition plan, :mod:`ferry.explain.store`), both encrypted when a key is
    set."""
    from ferry.explain.store import EXPLAIN_FILE, build_explain_file

    storage.write_parquet(run_dir / "reference.parquet", reference)
    storage.atomic_write_sealed(storage.local_fs(), str(run_dir / EXPLAIN_FILE), build_explain_file(reference, schema))
    return run_dir / "reference.parquet"


def read_parquet(path: Path, *, columns: list[str] | None = None) -> pd.DataFrame:
    """A run's Parquet file, encrypted or not."""
    return storage.read_parquet(path, columns=columns)


def write_model(path: Path, data: bytes) -> Path:
    """A model file of the run, encrypted when models are (``FERRY_ENCRYPTION_MODELS``)."""
    storage.atomic_write_sealed(storage.local_fs(), str(path), data, model=True)
    return path


def read_model(path: Path) -> bytes:
    """A model file of the run, encrypted or not."""
    return storage.read_bytes(storage.local_fs(), str(path))


def save_pipeline(pipeline: Pipeline, path: Path) -> Path:
    import skops.io as sio

    return write_model(path, sio.dumps(pipeline))


def load_pipeline(path: Path) -> Pipeline:
    """Load a skops file, trusting only scikit-learn/numpy types ferry pipelines are made of."""
    import skops.io as sio

    data = read_model(path)
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
