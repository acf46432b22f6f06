"""The sampled coalition plan's error against exact Shapley values, at 20 and 50 features.

    uv run python bench/explain.py [--permutations P] [--games 20] [--seed 0]

Without ``--permutations``, the plan is the one a new version gets at the default settings
(``FERRY_EXPLAIN_BACKGROUND_ROWS``, ``FERRY_EXPLAIN_BUDGET``: :func:`ferry.explain.plan_within`).

Exact values over 2^20 or 2^50 coalitions are out of reach by enumeration, so each game is a set function with
main effects and three-way interactions, ``v(S) = sum_{i in S} l_i + sum_{T subset S} c_T`` over 2d random triples
``T``, whose Shapley values have a closed form (``l_i + sum_{T holding i} c_T / 3``). Pairwise terms would tell
nothing: a permutation and its reverse (the plan samples both) already get them exactly.
For each feature count it prints: the coalitions evaluated per row (times the background rows, the onnxruntime rows
per explained row), the worst and the mean absolute error as a ratio to the largest exact attribution, the mean
measured standard error on the same scale, and the share of attributions within two measured standard errors of
the exact value (about 0.95 when the measured error is honest).
"""

from __future__ import annotations

import argparse

import numpy as np

from ferry.explain import ExplainSettings, combine, permutations_within, sampled_plan


def game(masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Coalition values and the exact Shapley values of one random game."""
    d = masks.shape[1]
    linear = rng.normal(size=d)
    triples = np.array([rng.choice(d, size=3, replace=False) for _ in range(2 * d)])
    weights = rng.normal(size=len(triples))
    v = masks @ linear + (masks[:, triples].all(axis=2) * weights).sum(axis=1)
    exact = linear.copy()
    for triple, c in zip(triples, weights, strict=True):
        exact[triple] += c / 3
    return v, exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--permutations", type=int, default=None, help="default: the default settings' plan")
    parser.add_argument("--games", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = ExplainSettings()
    rows = settings.background_rows
    print(f"games={args.games} background rows={rows} budget={settings.budget}")
    print("features  permutations  coalitions  ort rows/row  max err/scale  mean err/scale  mean SE/scale  within 2 SE")
    for d in (20, 50):
        permutations = args.permutations or permutations_within(d, rows=rows, budget=settings.budget)
        plan = sampled_plan(d, permutations=permutations, seed=args.seed)  # plan_within's plan at the defaults
        rng = np.random.default_rng(args.seed)
        worst, mean, se, inside = [], [], [], []
        for _ in range(args.games):
            v, truth = game(plan.masks, rng)
            values, error, _, _ = combine(v, 1, plan.weights)
            scale = np.abs(truth).max()
            diff = np.abs(values[0] - truth)
            worst.append(diff.max() / scale)
            mean.append(diff.mean() / scale)
            se.append(error[0].mean() / scale)
            inside.append(float((diff <= 2 * error[0]).mean()))
        m = plan.masks.shape[0]
        print(
            f"{d:>8}  {permutations:>12}  {m:>10,}  {m * rows:>12,}  {np.mean(worst):>13.3f}  {np.mean(mean):>14.3f}  "
            f"{np.mean(se):>13.3f}  {np.mean(inside):>11.2f}"
        )


if __name__ == "__main__":
    main()
