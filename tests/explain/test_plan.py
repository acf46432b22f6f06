"""The coalition plans: exact Shapley weights, the sampled estimate and its measured error, additivity, storage."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ferry.explain import CoalitionPlan, combine, exact_plan, plan_for, sampled_plan


def shapley_by_permutations(v: dict[frozenset[int], float], d: int) -> np.ndarray:
    """Textbook Shapley values: the average marginal contribution over all d! orders."""
    phi = np.zeros(d)
    for order in itertools.permutations(range(d)):
        seen: frozenset[int] = frozenset()
        for i in order:
            phi[i] += v[seen | {i}] - v[seen]
            seen = seen | {i}
    return phi / math.factorial(d)


def game(masks: np.ndarray, seed: int) -> np.ndarray:
    """A set function with interactions: v(S) for each mask row."""
    rng = np.random.default_rng(seed)
    d = masks.shape[1]
    linear = rng.normal(size=d)
    pair = rng.normal(size=(d, d))
    x = masks.astype(float)
    return np.asarray(x @ linear + np.einsum("mi,ij,mj->m", x, pair, x) + np.sin(x.sum(axis=1)))


def values_of(plan: CoalitionPlan, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply the plan through the runtime's combine, with one background row (n=1, b=1)."""
    values, error, base, full = combine(v, 1, plan.weights)
    assert base[0] == v[0]
    assert full[0] == v[-1]
    return values[0], error[0]


def test_exact_plan_equals_the_textbook_shapley_values() -> None:
    d = 5
    plan = exact_plan(d)
    assert plan.exact
    assert plan.masks.shape == (32, 5)
    assert plan.weights.shape == (1, 5, 32)
    v = game(plan.masks, seed=1)
    table = {frozenset(np.flatnonzero(row).tolist()): value for row, value in zip(plan.masks, v, strict=True)}
    phi, error = values_of(plan, v)
    np.testing.assert_allclose(phi, shapley_by_permutations(table, d), rtol=0, atol=1e-12)
    assert not error.any()


@pytest.mark.parametrize("plan", [exact_plan(1), exact_plan(7), sampled_plan(9), sampled_plan(30, permutations=32)])
def test_every_plan_adds_up_and_puts_empty_first_and_full_last(plan: CoalitionPlan) -> None:
    assert not plan.masks[0].any()
    assert plan.masks[-1].all()
    assert len(np.unique(plan.masks, axis=0)) == len(plan.masks)
    v = game(plan.masks, seed=2)
    phi, _ = values_of(plan, v)
    assert phi.sum() == pytest.approx(v[-1] - v[0], abs=1e-12)


def test_sampled_estimate_is_within_its_measured_error_of_the_exact_values() -> None:
    d = 10
    exact = exact_plan(d)
    truth, _ = values_of(exact, game(exact.masks, seed=3))
    sampled = sampled_plan(d, permutations=128, groups=8, seed=5)
    assert not sampled.exact
    estimate, error = values_of(sampled, game(sampled.masks, seed=3))
    assert (error > 0).all()
    z = np.abs(estimate - truth) / error
    assert z.max() < 5, z  # the measured standard error bounds the real error
    assert np.abs(estimate - truth).max() < 0.25 * np.abs(truth).max()


def test_the_plan_is_seeded_and_fixed() -> None:
    a, b = sampled_plan(15, seed=3), sampled_plan(15, seed=3)
    assert np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.masks, sampled_plan(15, seed=4).masks)


def test_plan_for_is_exact_up_to_twelve_features() -> None:
    assert plan_for(12).exact
    assert not plan_for(13).exact


def test_plan_round_trips_as_plain_arrays() -> None:
    plan = sampled_plan(14, permutations=16, groups=2)
    back = CoalitionPlan.from_bytes(plan.to_bytes())
    assert np.array_equal(back.masks, plan.masks)
    assert np.array_equal(back.weights, plan.weights)
    assert back.masks.dtype == bool
    assert back.weights.dtype == np.float64


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: exact_plan(0), "at least one feature"),
        (lambda: exact_plan(25), "use sampled_plan"),
        (lambda: sampled_plan(20, permutations=30, groups=8), "multiple of 2 x groups"),
        (lambda: sampled_plan(20, permutations=16, groups=1), "at least 2 groups"),
    ],
)
def test_bad_plans_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]
