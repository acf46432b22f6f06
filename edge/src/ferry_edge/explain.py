"""Explanations on the device: per-row attributions of the installed model, from its bundle's ``explain.npz``.

A bundle carries ``explain.npz`` when its version has one (its sha256 is in ``bundle.json`` and checked at unpack).
The file is a plain ``.npz`` read with numpy alone, no pickled objects: ``masks`` (m, d) and ``weights`` (g, d, m),
the coalition plan; ``features``, the schema's feature names in order; and ``background.<feature>``, one (b, 1)
array per feature (text comes back as numpy's 'U' strings and is turned into the object arrays the model takes).

The arithmetic is :mod:`ferry_edge.explain_runtime`, a byte-identical copy of the publisher's
``ferry/explain/runtime.py`` (numpy only), so the device tiles, calls onnxruntime and combines exactly as the
online service and batch scoring do: the same rows of the same version get the same float64 numbers. Rows go to
onnxruntime in chunks of whole rows (a row's numbers do not depend on the chunking), and the top features are
ranked by absolute attribution in a stable order, as everywhere else.

Each row's answer is the JSON every surface returns::

    {"class": 1, "value": 0.81, "base_value": 0.27, "attributions": {"tenure_months": -0.12, ...},
     "standard_errors": {...} or null when exact, "top": [{"feature": "plan", "attribution": 0.31}, ...],
     "exact": false}
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferry_edge.errors import BundleRejected, InputError
from ferry_edge.explain_runtime import Session, attribute

__all__ = ["DEFAULT_TOP_K", "EXPLAIN_FILE", "MAX_TILE_ROWS", "ExplainFile", "explain", "top_k_of"]

EXPLAIN_FILE = "explain.npz"
DEFAULT_TOP_K = 5
"""Features named in ``top`` when the caller asks none (fewer when the model has fewer): the publisher's default."""
MAX_TILE_ROWS = 1
"""Rows explained per onnxruntime call: one, as the publisher's explainer does, because onnxruntime's float32 answer
for a row can change in the last bit with the number of rows in the call; so a device gives the same bits as the
online service and batch scoring whatever it is asked to explain at once."""
_PREFIX = "background."


@dataclass(frozen=True)
class ExplainFile:
    """A bundle's plan (``masks``, ``weights``) and background (one (b, 1) array per feature, schema order)."""

    features: tuple[str, ...]
    masks: np.ndarray
    weights: np.ndarray
    background: dict[str, np.ndarray]

    @property
    def exact(self) -> bool:
        """True when the plan gives exact Shapley values (one group over every coalition)."""
        return bool(self.weights.shape[0] == 1 and self.masks.shape[0] == 2 ** self.masks.shape[1])

    @classmethod
    def read(cls, path: Path, features: Sequence[str]) -> ExplainFile:
        """Read ``path``; BundleRejected naming it when it is not an explanation file of these ``features``."""
        try:
            with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as arrays:
                names = tuple(str(f) for f in arrays["features"].tolist())
                masks = arrays["masks"].astype(bool)
                weights = arrays["weights"].astype(np.float64)
                background = {}
                for name in names:
                    column = arrays[_PREFIX + name]
                    background[name] = column.astype(object) if column.dtype.kind == "U" else column
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise BundleRejected(f"{path.name} is not an explanation file ({exc})") from None
        if names != tuple(features):
            raise BundleRejected(f"{path.name} covers the features {list(names)}, the model {list(features)}")
        d = len(names)
        if masks.ndim != 2 or masks.shape[1] != d or weights.ndim != 3 or weights.shape[1:] != (d, masks.shape[0]):
            raise BundleRejected(f"{path.name}: the plan ({masks.shape}, {weights.shape}) does not fit {d} features")
        shapes = sorted({np.asarray(background[n]).shape for n in names})
        if len(shapes) != 1 or len(shapes[0]) != 2 or shapes[0][0] < 1 or shapes[0][1] != 1:
            raise BundleRejected(f"{path.name}: the background columns are not all of one (b, 1) shape: {shapes}")
        return cls(features=names, masks=masks, weights=weights, background=background)


def top_k_of(top_k: Any, d: int) -> int:
    """The number of top features to name: ``top_k`` (1 to ``d``), or the default; InputError naming ``top_k``."""
    if top_k is None:
        return min(DEFAULT_TOP_K, d)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= d:
        raise InputError("top_k", f"must be a whole number from 1 to {d} (the features), got {top_k!r}")
    return top_k


def class_index(target: Any, *, task: str, classes: Sequence[Any]) -> int:
    """The index of the class asked (-1: the class predicted per row); InputError naming ``class``."""
    if target is None:
        return -1
    if task == "regression":
        raise InputError("class", "a regression model explains its value; ask for no class")
    names = [str(c) for c in classes]
    if str(target) not in names:
        raise InputError("class", f"{target!r} is not one of the model's classes {names}")
    return names.index(str(target))


def _class(index: int, classes: Sequence[Any]) -> Any:
    if index < 0:
        return None
    return classes[index] if classes else index


def explain(
    session: Session,
    output_names: list[str],
    stored: ExplainFile,
    inputs: dict[str, np.ndarray],
    *,
    task: str,
    classes: Sequence[Any],
    target: Any = None,
    top_k: Any = None,
) -> list[dict[str, Any]]:
    """One JSON object per row of ``inputs`` (checked (n, 1) arrays, as ``EdgeModel.prepare`` makes them)."""
    features = list(stored.features)
    k = top_k_of(top_k, len(features))
    index = class_index(target, task=task, classes=classes)
    n = len(inputs[features[0]])
    step = MAX_TILE_ROWS
    out: list[dict[str, Any]] = []
    for start in range(0, n, step):
        chunk = {name: np.asarray(inputs[name])[start : start + step] for name in features}
        rows = len(chunk[features[0]])
        found = attribute(
            session,
            output_names,
            chunk,
            stored.background,
            features,
            stored.masks,
            stored.weights,
            target=np.full(rows, index, dtype=np.int64),
        )
        order = np.argsort(-np.abs(found.values), axis=1, kind="stable")[:, :k]
        for i in range(rows):
            values = found.values[i]
            out.append(
                {
                    "class": _class(int(found.target[i]), classes),
                    "value": float(found.prediction[i]),
                    "base_value": float(found.base[i]),
                    "attributions": {name: float(values[j]) for j, name in enumerate(features)},
                    "standard_errors": None
                    if stored.exact
                    else {name: float(found.error[i, j]) for j, name in enumerate(features)},
                    "top": [{"feature": features[j], "attribution": float(values[j])} for j in order[i].tolist()],
                    "exact": stored.exact,
                }
            )
    return out
