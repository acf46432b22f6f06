"""The global importance table as plain functions: ranks, rank moves, permutation losses, the file, the chart."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import png_size, svg_texts

from ferry.explain import Importance, importance_chart, table_rows, waterfall
from ferry.explain.importance import permutation_importance, rank_text, ranks, sample_rows


def _table(champion: str | None = None, note: str | None = None, previous: dict[str, int] | None = None) -> Importance:
    return Importance.build(
        ["a", "b", "c"], np.array([0.1, 0.3, 0.1]), np.array([0.02, 0.05, -0.001]), np.array([0.01, 0.0, 0.002]),
        previous=previous, task="binary", rows=3, holdout_rows=10, exact=True, metric="roc_auc",
        lower_is_better=False, baseline=0.8, repeats=3, seed=0, champion=champion, champion_note=note,
    )  # fmt: skip


def test_ranks_put_the_largest_first_and_keep_schema_order_on_ties() -> None:
    assert ranks([0.1, 0.3, 0.1, 0.0]) == [2, 1, 3, 4]


def test_rank_text_says_how_the_rank_moved() -> None:
    assert rank_text(3, 5, compared=True) == "3 (was 5)"
    assert rank_text(3, 3, compared=True) == "3 (same)"
    assert rank_text(3, None, compared=True) == "3 (new)"
    assert rank_text(3, None, compared=False) == "3"


def test_table_rows_show_moves_only_when_a_champion_was_ranked() -> None:
    moved = table_rows(_table(champion="v1", previous={"a": 1, "b": 1}))
    assert [(r["feature"], r["rank"]) for r in moved] == [("b", "1 (same)"), ("a", "2 (was 1)"), ("c", "3 (new)")]
    unranked = table_rows(_table(champion="v1", note="the champion v1 has no importance.json"))
    assert [r["rank"] for r in unranked] == ["1", "2", "3"]
    assert moved[0]["roc_auc loss when shuffled"] == "0.05 ± 0"


def test_the_table_round_trips_and_a_bad_file_is_named() -> None:
    table = _table(champion="v1", previous={"b": 2})
    assert Importance.from_dict(table.to_dict()) == table
    with pytest.raises(ValueError, match=r"^importance.json: not a ferry importance table .*features"):
        Importance.from_dict({"task": "binary"})


def test_permutation_importance_finds_the_only_feature_the_metric_reads() -> None:
    rng = np.random.default_rng(0)
    inputs = {"a": rng.normal(size=200), "b": rng.normal(size=200)}

    def error(x: dict[str, np.ndarray]) -> float:  # a lower-is-better metric of feature a alone
        return float(np.mean((x["a"] - inputs["a"]) ** 2))

    baseline, loss, spread = permutation_importance(error, inputs, ["a", "b"], lower_is_better=True, repeats=3)
    assert baseline == 0.0
    assert loss[0] > 1.0
    assert spread[0] > 0
    assert loss[1] == 0.0
    assert spread[1] == 0.0
    again = permutation_importance(error, inputs, ["a", "b"], lower_is_better=True, repeats=3)
    assert np.array_equal(again[1], loss)  # seeded
    higher = permutation_importance(lambda x: -error(x), inputs, ["a", "b"], lower_is_better=False, repeats=3)
    assert np.array_equal(higher[1], loss)  # a loss is "how much worse", whatever the direction
    with pytest.raises(ValueError, match="repeats"):
        permutation_importance(error, inputs, ["a"], lower_is_better=True, repeats=0)


def test_sample_rows_is_seeded_sorted_and_bounded() -> None:
    assert list(sample_rows(5, limit=200)) == [0, 1, 2, 3, 4]
    drawn = sample_rows(1000, limit=200, seed=1)
    assert len(drawn) == len(set(drawn.tolist())) == 200
    assert list(drawn) == sorted(drawn)
    assert np.array_equal(drawn, sample_rows(1000, limit=200, seed=1))


def test_the_chart_and_the_waterfall_are_real_pictures() -> None:
    texts = svg_texts(importance_chart(_table(), version="v9"))
    assert "Global importance of v9" in texts
    assert {"a", "b", "c"} <= set(texts)
    row = {
        "class": "yes", "value": 0.7, "base_value": 0.3, "exact": False,
        "attributions": {"a": 0.5, "b": -0.2, "c": 0.1},
        "top": [{"feature": "a", "attribution": 0.5}, {"feature": "b", "attribution": -0.2}],
    }  # fmt: skip
    shown = svg_texts(waterfall([row, row], top_k=1, title="churn v9"))
    assert "a" in shown
    assert "2 other features" in shown
    assert "b" not in shown
    assert any(t.startswith("row 2: P(yes) = 0.7 from base 0.3") for t in shown)
    width, height = png_size(waterfall([row], top_k=2, fmt="png"))
    assert width > 100
    assert height > 100
    with pytest.raises(ValueError, match="svg or png"):
        waterfall([row], top_k=2, fmt="jpg")
