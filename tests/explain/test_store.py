"""The explanation file of a version: the plan that fits the budget, a round trip through plain ``.npz`` bytes
(text features included), and a damaged file refused naming it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ferry.explain import ExplainFile, ExplainSettings, build_explain_file, plan_within
from ferry.schema import Schema


def schema(d: int) -> Schema:
    features = [{"name": f"x{i}", "type": "numeric"} for i in range(d - 1)]
    features.append({"name": "kind", "type": "categorical", "levels": ["a", "b"]})
    return Schema.from_dict({"name": "wide", "target": "y", "id": "row_id", "task": "binary", "features": features})


def frame(d: int, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    columns = {f"x{i}": rng.normal(size=n) for i in range(d - 1)}
    return pd.DataFrame({"row_id": [f"id-{i}" for i in range(n)], **columns, "kind": rng.choice(["a", "b"], n), "y": 1})


@pytest.mark.parametrize(("d", "rows", "budget"), [(3, 20, 8192), (8, 20, 8192), (9, 20, 8192), (15, 20, 8192)])
def test_the_plan_fits_the_budget(d: int, rows: int, budget: int) -> None:
    plan = plan_within(d, rows=rows, budget=budget)
    assert plan.exact == (2**d * rows <= budget)
    assert plan.masks.shape[0] * rows <= budget


def test_a_tiny_budget_still_has_error_groups() -> None:
    plan = plan_within(40, rows=50, budget=256)
    assert not plan.exact
    assert plan.weights.shape[0] == 8  # 16 permutations: 8 groups of one antithetic pair


def test_the_file_round_trips_with_text_features_and_no_ids() -> None:
    s = schema(5)
    data = build_explain_file(frame(5), s, ExplainSettings(background_rows=12, budget=4096))
    stored = ExplainFile.from_bytes(data)
    assert stored.features == tuple(s.feature_names)
    assert set(stored.background) == set(s.feature_names)  # no id, no target
    assert stored.background["kind"].dtype == object
    assert set(stored.background["kind"].ravel()) <= {"a", "b"}
    assert stored.background["x0"].dtype == np.float32
    assert stored.background["x0"].shape == (12, 1)
    assert stored.plan.exact
    assert build_explain_file(frame(5), s, ExplainSettings(background_rows=12, budget=4096)) == data  # seeded


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b"not a zip", lambda b: b[:30] + bytes(40) + b[70:]],
    ids=["truncated", "garbage", "changed"],
)
def test_a_damaged_file_is_refused_naming_it(damage: object) -> None:
    data = build_explain_file(frame(4), schema(4), ExplainSettings(background_rows=5))
    with pytest.raises(ValueError, match=r"^models/wide/explain\.npz: not a ferry explanation file"):
        ExplainFile.from_bytes(damage(data), name="models/wide/explain.npz")  # type: ignore[operator]
