"""The coalition plan: which feature coalitions an explanation evaluates, and the weights that turn their values
into Shapley values. Made once per version, stored as two plain arrays.

A plan is ``masks`` (m, d) bool, one row per coalition (True: the feature comes from the explained row, False: from
the background row), and ``weights`` (g, d, m) float64. For coalition values ``v`` (m,), each of the ``g`` groups
gives an estimate ``weights[k] @ v`` of the d attributions; the attribution is their mean and, when g > 1, their
spread over groups gives the estimate's standard error.

- **exact** (d <= :data:`MAX_EXACT_FEATURES`): all 2^d coalitions, one group, the Shapley weights
  ``|S|! (d - |S| - 1)! / d!``.
- **sampled** (more features): seeded permutations in antithetic pairs (a permutation and its reverse); each
  permutation adds ``v(prefix + i) - v(prefix)`` to feature ``i``; the permutations are split into ``g`` groups.

Both put the empty coalition first and the full one last (rows sorted), and every group's weights telescope, so
the attributions of every plan sum exactly to ``v(full) - v(empty)``: the prediction minus the base value.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAX_EXACT_FEATURES",
    "CoalitionPlan",
    "exact_plan",
    "permutations_within",
    "plan_for",
    "plan_within",
    "sampled_plan",
]

MAX_EXACT_FEATURES = 12
"""Up to this many features, the plan evaluates every coalition (4,096 at 12)."""


@dataclass(frozen=True)
class CoalitionPlan:
    """Coalitions (``masks`` (m, d) bool; row 0 empty, row m-1 full) and per-group weights (g, d, m) float64."""

    masks: np.ndarray
    weights: np.ndarray

    @property
    def exact(self) -> bool:
        """True when the attributions are exact Shapley values (one group over every coalition)."""
        return bool(self.weights.shape[0] == 1 and self.masks.shape[0] == 2 ** self.masks.shape[1])

    def to_bytes(self) -> bytes:
        """The plan as an ``.npz`` file (two arrays, no pickled objects)."""
        out = io.BytesIO()
        np.savez(out, masks=self.masks, weights=self.weights)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CoalitionPlan:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(masks=arrays["masks"].astype(bool), weights=arrays["weights"].astype(np.float64))


def _check_features(d: int) -> None:
    if d < 1:
        raise ValueError(f"a coalition plan needs at least one feature, got {d}")


def exact_plan(d: int) -> CoalitionPlan:
    """Every coalition of ``d`` features with the exact Shapley weights."""
    _check_features(d)
    if d > 20:
        raise ValueError(f"an exact plan over {d} features would evaluate 2^{d} coalitions; use sampled_plan")
    codes = np.arange(2**d, dtype=np.int64)
    masks = ((codes[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)
    masks = np.unique(masks, axis=0)  # sorted rows: empty first, full last
    sizes = masks.sum(axis=1)
    # w[s] = s! (d - s - 1)! / d!: the weight of a coalition of size s that does not hold the feature
    w = np.array([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)])
    with_feature = w[np.clip(sizes - 1, 0, d - 1)]  # the coalition is T + {i}, |T| = size - 1
    without_feature = w[np.clip(sizes, 0, d - 1)]
    weights = np.where(masks.T, with_feature[None, :], -without_feature[None, :])
    return CoalitionPlan(masks=masks, weights=weights[None, :, :])


def sampled_plan(d: int, *, permutations: int = 64, groups: int = 8, seed: int = 0) -> CoalitionPlan:
    """``permutations`` seeded permutations (antithetic pairs) of ``d`` features, split into ``groups`` groups."""
    _check_features(d)
    if groups < 2 or permutations % (2 * groups):
        raise ValueError(
            f"permutations ({permutations}) must be a multiple of 2 x groups ({groups}), with at least 2 groups"
        )
    rng = np.random.default_rng(seed)
    half = [rng.permutation(d) for _ in range(permutations // 2)]
    orders = np.array([p for first in half for p in (first, first[::-1])])  # (P, d)
    # prefixes[p, k] is the coalition of the first k features of permutation p (k = 0..d)
    ranks = np.argsort(orders, axis=1)  # ranks[p, j]: where feature j comes in permutation p
    prefixes = ranks[:, None, :] < np.arange(d + 1)[None, :, None]  # (P, d+1, d)
    masks, index = np.unique(prefixes.reshape(-1, d), axis=0, return_inverse=True)
    index = index.reshape(len(orders), d + 1)
    per_group = len(orders) // groups
    weights = np.zeros((groups, d, len(masks)))
    for p, order in enumerate(orders):
        g = p // per_group
        for k, feature in enumerate(order):
            weights[g, feature, index[p, k + 1]] += 1.0 / per_group
            weights[g, feature, index[p, k]] -= 1.0 / per_group
    return CoalitionPlan(masks=masks, weights=weights)


def plan_for(d: int, *, max_exact: int = MAX_EXACT_FEATURES, permutations: int = 64, seed: int = 0) -> CoalitionPlan:
    """The exact plan up to ``max_exact`` features, a seeded sampled plan above."""
    return exact_plan(d) if d <= max_exact else sampled_plan(d, permutations=permutations, seed=seed)


def permutations_within(d: int, *, rows: int, budget: int, groups: int = 8) -> int:
    """How many permutations a sampled plan of ``d`` features gets within ``budget`` evaluations against ``rows``
    background rows: as many as fit (at most ``P (d - 1) + 2`` coalitions), in multiples of ``2 x groups``, at least
    ``2 x groups`` (so that the error estimate has its groups) and at most 1,024."""
    step = 2 * groups
    fits = (budget // rows - 2) // max(1, d - 1)
    return max(step, min(1024, fits // step * step))


def plan_within(d: int, *, rows: int, budget: int, seed: int = 0, groups: int = 8) -> CoalitionPlan:
    """The plan whose coalitions x ``rows`` background rows fit in ``budget`` model evaluations per explained row.

    Exact when every coalition fits (and ``d`` <= :data:`MAX_EXACT_FEATURES`); otherwise a sampled plan of
    :func:`permutations_within` permutations.
    """
    _check_features(d)
    if rows < 1 or budget < 1:
        raise ValueError(f"rows ({rows}) and budget ({budget}) must be positive")
    if d <= MAX_EXACT_FEATURES and 2**d * rows <= budget:
        return exact_plan(d)
    permutations = permutations_within(d, rows=rows, budget=budget, groups=groups)
    return sampled_plan(d, permutations=permutations, groups=groups, seed=seed)
