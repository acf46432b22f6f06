"""What an explanation looks like outside Python: the JSON answer of one row (online ``/explain``, ``ferry models
explain``; the device agent writes the same shape with its own code) and the columns batch scoring adds.

JSON, one object per row (features in schema order)::

    {"class": "yes",            # the class explained; null for a regressor
     "value": 0.81,             # the prediction explained: that class's probability, or the regressor's value
     "base_value": 0.27,        # the mean of the same over the background
     "attributions": {"tenure_months": -0.12, ...},   # they sum to value - base_value
     "standard_errors": {"tenure_months": 0.004, ...} or null when exact,
     "top": [{"feature": "plan", "attribution": 0.31}, ...],   # the top k by absolute attribution
     "exact": false}

Batch columns: ``explained_class`` (classifiers), ``explained_value``, ``base_value``, ``attribution_<feature>``
per feature, and ``top_1`` .. ``top_k`` naming the features. Numbers are the float64 the runtime computed, so a
row explained on any surface carries the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferry.explain.explainer import Explanation

__all__ = ["ATTRIBUTION_PREFIX", "TOP_PREFIX", "batch_columns", "records"]

ATTRIBUTION_PREFIX = "attribution_"
TOP_PREFIX = "top_"


def _class(target: int | str | None) -> Any:
    return target.item() if isinstance(target, np.generic) else target


def records(found: Explanation) -> list[dict[str, Any]]:
    """One JSON-able object per explained row."""
    out = []
    for i, top in enumerate(found.top):
        values = found.values[i]
        index = {name: j for j, name in enumerate(found.features)}
        out.append(
            {
                "class": _class(found.target[i]),
                "value": float(found.prediction[i]),
                "base_value": float(found.base[i]),
                "attributions": {name: float(values[j]) for j, name in enumerate(found.features)},
                "standard_errors": None
                if found.exact
                else {name: float(found.error[i, j]) for j, name in enumerate(found.features)},
                "top": [{"feature": name, "attribution": float(values[index[name]])} for name in top],
                "exact": found.exact,
            }
        )
    return out


def batch_columns(found: Explanation, *, classifier: bool) -> dict[str, np.ndarray]:
    """The columns batch scoring adds for these rows, in order."""
    columns: dict[str, np.ndarray] = {}
    if classifier:
        columns["explained_class"] = np.array([_class(t) for t in found.target], dtype=object)
    columns["explained_value"] = np.asarray(found.prediction, dtype=np.float64)
    columns["base_value"] = np.asarray(found.base, dtype=np.float64)
    for j, name in enumerate(found.features):
        columns[ATTRIBUTION_PREFIX + name] = np.asarray(found.values[:, j], dtype=np.float64)
    k = len(found.top[0]) if found.top else 0
    for r in range(k):
        columns[f"{TOP_PREFIX}{r + 1}"] = np.array([top[r] for top in found.top], dtype=object)
    return columns
