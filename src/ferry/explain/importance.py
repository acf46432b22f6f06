"""Global importance of a version: which features move its answers on the holdout, and which its quality rests on,
with how each feature's rank moved against the champion. Written as ``importance.json`` with the version's files.

Two measures per feature, both from ``model.onnx`` (the bytes every surface runs):

- **mean |attribution|**: the mean absolute Shapley value (:class:`ferry.explain.Explainer`, the version's own
  background and plan) over a seeded sample of at most ``FERRY_IMPORTANCE_ROWS`` (200) holdout rows, explaining
  each row's predicted class (a binary model: the same magnitudes as P(positive)) or a regressor's value. The
  ranking is by this measure.
- **permutation importance**: how much the gate's primary metric worsens when the feature's column of the whole
  holdout is shuffled (seeded, ``FERRY_IMPORTANCE_REPEATS`` (3) times; the mean and the standard deviation of the
  loss). Positive: the metric got worse without the feature; about 0: the model does not rely on it.

``importance.json``::

    {"format": 1, "task": "binary", "rows": 200, "holdout_rows": 1200, "exact": false,
     "metric": "roc_auc", "lower_is_better": false, "baseline": 0.83, "repeats": 3, "seed": 0,
     "champion": "20261130T..." or null, "champion_note": "why no ranking to compare" or null,
     "features": [{"feature": "plan", "rank": 1, "was": 2 or null, "mean_abs_attribution": 0.061,
                   "permutation": 0.042, "permutation_std": 0.003}, ...]}   # by rank

``was`` is the feature's rank in the champion's table; null with a champion means the champion had no such feature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ferry.explain.explainer import Explainer
from ferry.explain.importance_settings import REPEATS, SAMPLE_ROWS

__all__ = [
    "FORMAT",
    "IMPORTANCE_FILE",
    "REPEATS",
    "SAMPLE_ROWS",
    "FeatureImportance",
    "Importance",
    "mean_abs_attribution",
    "permutation_importance",
    "rank_text",
    "ranks",
    "sample_rows",
    "table_rows",
]

IMPORTANCE_FILE = "importance.json"
FORMAT = 1

Inputs = dict[str, np.ndarray]


def sample_rows(n: int, *, limit: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray:
    """Positions of at most ``limit`` of ``n`` rows, drawn with ``seed``, in ascending order."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def mean_abs_attribution(explainer: Explainer, inputs: Inputs) -> np.ndarray:
    """Mean absolute attribution per feature (schema order) of the rows of ``inputs``, each row explained for its
    predicted class (a regressor: its value)."""
    found = explainer.explain(inputs)
    return np.asarray(np.abs(found.values).mean(axis=0), dtype=np.float64)


def permutation_importance(
    score: Callable[[Inputs], float],
    inputs: Inputs,
    features: Sequence[str],
    *,
    lower_is_better: bool,
    repeats: int = REPEATS,
    seed: int = 0,
) -> tuple[float, np.ndarray, np.ndarray]:
    """``(baseline, mean loss, std of the loss)`` of ``score`` (a metric of the model's answers on ``inputs``) when
    each feature's column is shuffled, ``repeats`` times with ``seed``; a loss is how much worse the metric got."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    baseline = float(score(inputs))
    n = len(np.asarray(inputs[features[0]]))
    rng = np.random.default_rng(seed)
    losses = np.zeros((len(features), repeats))
    for j, name in enumerate(features):
        for r in range(repeats):
            shuffled = dict(inputs)
            shuffled[name] = np.asarray(inputs[name])[rng.permutation(n)]
            found = float(score(shuffled))
            losses[j, r] = found - baseline if lower_is_better else baseline - found
    spread = losses.std(axis=1, ddof=1) if repeats > 1 else np.zeros(len(features))
    return baseline, losses.mean(axis=1), spread


def ranks(values: Sequence[float] | np.ndarray) -> list[int]:
    """Rank of each value, 1 for the largest; ties keep the order given (schema order)."""
    order = np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")
    out = [0] * len(order)
    for position, j in enumerate(order.tolist()):
        out[j] = position + 1
    return out


@dataclass(frozen=True)
class FeatureImportance:
    feature: str
    rank: int
    mean_abs_attribution: float
    permutation: float
    permutation_std: float
    was: int | None = None


@dataclass(frozen=True)
class Importance:
    """A version's global importance table (the module docstring spells its file)."""

    task: str
    rows: int
    holdout_rows: int
    exact: bool
    metric: str
    lower_is_better: bool
    baseline: float
    repeats: int
    seed: int
    features: tuple[FeatureImportance, ...]
    champion: str | None = None
    champion_note: str | None = None
    format: int = field(default=FORMAT)

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        attribution: np.ndarray,
        permutation: np.ndarray,
        permutation_std: np.ndarray,
        *,
        previous: Mapping[str, int] | None = None,
        **info: Any,
    ) -> Importance:
        """The table of features ``names`` ranked by ``attribution``; ``previous`` is the champion's ranks."""
        rank = ranks(attribution)
        rows = [
            FeatureImportance(
                feature=name,
                rank=rank[j],
                mean_abs_attribution=float(attribution[j]),
                permutation=float(permutation[j]),
                permutation_std=float(permutation_std[j]),
                was=None if previous is None else previous.get(name),
            )
            for j, name in enumerate(names)
        ]
        return cls(features=tuple(sorted(rows, key=lambda r: r.rank)), **info)

    def ranking(self) -> dict[str, int]:
        return {f.feature: f.rank for f in self.features}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"] = [asdict(f) for f in self.features]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str = IMPORTANCE_FILE) -> Importance:
        """Read a table; one that is not one raises ``ValueError`` naming ``name`` and the field at fault."""
        try:
            features = tuple(FeatureImportance(**f) for f in data["features"])
            info = {k: data[k] for k in cls.__dataclass_fields__ if k != "features" and k in data}
            return cls(features=features, **info)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{name}: not a ferry importance table ({type(exc).__name__}: {exc})") from None


def rank_text(rank: int, was: int | None, *, compared: bool) -> str:
    """``3``, ``3 (was 5)``, ``3 (same)`` or ``3 (new)`` when the champion had no such feature."""
    if not compared:
        return str(rank)
    if was is None:
        return f"{rank} (new)"
    return f"{rank} (same)" if was == rank else f"{rank} (was {was})"


def table_rows(table: Importance) -> list[dict[str, str]]:
    """One row per feature, by rank, for the retrain's table artifact and the model card."""
    compared = table.champion is not None and table.champion_note is None
    return [
        {
            "feature": f.feature,
            "rank": rank_text(f.rank, f.was, compared=compared),
            "mean abs attribution": f"{f.mean_abs_attribution:.4g}",
            f"{table.metric} loss when shuffled": f"{f.permutation:.4g} ± {f.permutation_std:.2g}",
        }
        for f in table.features
    ]
