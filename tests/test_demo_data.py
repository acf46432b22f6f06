"""The demo churn generator: deterministic, realistic, valid against its schema, and drift that really hurts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from ferry.data import read_table, to_onnx_inputs, validate
from ferry.demo_data import NEW_DEVICE_OS, churn_schema, make_churn, write_demo
from ferry.schema import Schema

EXAMPLE_SCHEMA = Path(__file__).resolve().parents[1] / "examples" / "churn" / "schema.yaml"


@pytest.fixture(scope="module")
def schema() -> Schema:
    return churn_schema()


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_churn(20_000, seed=11)


@pytest.fixture(scope="module")
def drifted() -> pd.DataFrame:
    return make_churn(20_000, seed=12, drift=1.0)


def test_same_seed_same_frame() -> None:
    pd.testing.assert_frame_equal(make_churn(2_000, seed=3, drift=0.4), make_churn(2_000, seed=3, drift=0.4))


def test_other_seed_other_frame() -> None:
    a, b = make_churn(2_000, seed=3), make_churn(2_000, seed=4)
    assert not a["monthly_charges"].equals(b["monthly_charges"])


@pytest.mark.parametrize("drift", [-0.1, 1.01, float("nan"), "0.5", True])
def test_drift_must_be_between_0_and_1(drift: object) -> None:
    with pytest.raises(ValueError, match="drift must be a number between 0 and 1"):
        make_churn(10, drift=drift)  # type: ignore[arg-type]


@pytest.mark.parametrize("n_rows", [0, -5, 2.5])
def test_n_rows_must_be_positive(n_rows: object) -> None:
    with pytest.raises(ValueError, match="n_rows"):
        make_churn(n_rows)  # type: ignore[arg-type]


def test_columns_ids_and_timestamps(reference: pd.DataFrame, schema: Schema) -> None:
    expected = ["customer_id", "signup_at", "email", "phone", *schema.feature_names, "churned"]
    assert list(reference.columns) == expected
    assert reference["customer_id"].iloc[0] == "C000001"
    assert reference["customer_id"].is_unique
    stamps = reference["signup_at"]
    assert str(stamps.dtype) == "datetime64[ns, UTC]"
    assert stamps.is_monotonic_increasing
    assert stamps.min() >= pd.Timestamp("2025-01-01", tz="UTC")
    assert stamps.max() < pd.Timestamp("2026-01-01", tz="UTC")
    assert reference["email"].str.endswith("@example.com").all()
    assert reference["phone"].str.startswith("+1-555-").all()
    assert set(reference["churned"].unique()) == {0, 1}


def test_start_and_days() -> None:
    frame = make_churn(500, seed=1, start="2024-06-01", days=7)
    assert frame["signup_at"].min() >= pd.Timestamp("2024-06-01", tz="UTC")
    assert frame["signup_at"].max() < pd.Timestamp("2024-06-08", tz="UTC")


def test_number_of_features(schema: Schema) -> None:
    assert 12 <= len(schema.features) <= 16
    assert {"plan", "contract", "payment_method", "region", "device_os"} == set(schema.categorical_features)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_imbalance(seed: int) -> None:
    rate = make_churn(20_000, seed=seed)["churned"].mean()
    assert 0.15 <= rate <= 0.25


def test_missing_values_where_real_data_has_them(reference: pd.DataFrame) -> None:
    share = reference.isna().mean()
    for column in ("satisfaction_score", "data_usage_gb", "region"):
        assert 0.02 <= share[column] <= 0.15, column
    assert share["total_charges"] > 0  # brand-new customers have no bill yet
    assert reference.loc[reference["total_charges"].isna(), "tenure_months"].eq(0).all()
    for column in ("customer_id", "tenure_months", "plan", "contract", "churned"):
        assert share[column] == 0, column


def test_plausible_values(reference: pd.DataFrame) -> None:
    assert reference["satisfaction_score"].dropna().between(1, 10).all()
    assert reference["age"].between(18, 90).all()
    assert (reference["tenure_months"] >= 0).all()
    means = reference.groupby("plan")["monthly_charges"].mean()
    assert means["basic"] < means["standard"] < means["premium"]


def test_declared_directions_show_in_the_data(reference: pd.DataFrame, schema: Schema) -> None:
    assert schema.feature("tenure_months").direction == "decreasing"
    assert schema.feature("support_calls").direction == "increasing"
    churn = reference["churned"]
    assert churn[reference["tenure_months"] < 6].mean() > 2 * churn[reference["tenure_months"] >= 36].mean()
    assert churn[reference["support_calls"] >= 3].mean() > 2 * churn[reference["support_calls"] == 0].mean()


def test_validates_against_its_schema(reference: pd.DataFrame, drifted: pd.DataFrame, schema: Schema) -> None:
    for frame in (reference, drifted):
        typed = validate(frame, schema)
        assert "email" not in typed.columns
        assert "phone" not in typed.columns
        assert typed["churned"].tolist() == frame["churned"].tolist()


def test_drift_shifts_distributions(reference: pd.DataFrame, drifted: pd.DataFrame) -> None:
    assert drifted["monthly_charges"].mean() > reference["monthly_charges"].mean() + 8
    assert drifted["support_calls"].mean() > 1.4 * reference["support_calls"].mean()
    m2m = "month-to-month"
    assert (drifted["contract"] == m2m).mean() > (reference["contract"] == m2m).mean() + 0.15
    assert (reference["device_os"] == NEW_DEVICE_OS).mean() == 0
    assert 0.2 < (drifted["device_os"] == NEW_DEVICE_OS).mean() < 0.4


def test_drift_is_proportional() -> None:
    means = [make_churn(10_000, seed=5, drift=d)["monthly_charges"].mean() for d in (0.0, 0.5, 1.0)]
    assert means[0] < means[1] < means[2]


def _features(frame: pd.DataFrame, schema: Schema, categories: dict[str, list[str]]) -> pd.DataFrame:
    """Typed features with the categories of the training data (unseen ones become missing)."""
    x = validate(frame, schema)[list(schema.feature_names)]
    for name in schema.categorical_features:
        known = x[name].where(x[name].isin(categories[name]), None)
        x[name] = pd.Categorical(known, categories=categories[name])
    return x


def _fit(frame: pd.DataFrame, schema: Schema) -> tuple[HistGradientBoostingClassifier, dict[str, list[str]]]:
    typed = validate(frame, schema)
    categories = {n: sorted(typed[n].dropna().unique()) for n in schema.categorical_features}
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    with threadpool_limits(1):
        model.fit(_features(frame, schema, categories), typed["churned"])
    return model, categories


def _auc(model: HistGradientBoostingClassifier, categories: dict[str, list[str]], frame: pd.DataFrame) -> float:
    schema = churn_schema()
    with threadpool_limits(1):
        scores = model.predict_proba(_features(frame, schema, categories))[:, 1]
    return float(roc_auc_score(frame["churned"], scores))


def test_concept_is_learnable_and_drift_hurts(reference: pd.DataFrame, drifted: pd.DataFrame, schema: Schema) -> None:
    cut = reference["signup_at"].quantile(0.8)
    train, holdout = reference[reference["signup_at"] < cut], reference[reference["signup_at"] >= cut]
    model, categories = _fit(train, schema)

    auc_reference = _auc(model, categories, holdout)
    auc_drifted = _auc(model, categories, drifted)
    assert 0.80 <= auc_reference <= 0.90
    assert auc_reference - auc_drifted > 0.05, (auc_reference, auc_drifted)

    # The drop is a change of concept, not noise: a model trained on drifted data ranks drifted customers well.
    fresh, fresh_categories = _fit(make_churn(16_000, seed=13, drift=1.0), schema)
    assert _auc(fresh, fresh_categories, drifted) > auc_drifted + 0.08


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_demo_round_trips(tmp_path: Path, schema: Schema, fmt: str) -> None:
    path = write_demo(tmp_path / "out", n_rows=1_500, seed=2, drift=0.25, fmt=fmt)  # type: ignore[arg-type]
    assert path == tmp_path / "out" / f"churn-n1500-seed2-drift0.25.{fmt}"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    typed = validate(read_table(path), schema)
    expected = validate(make_churn(1_500, seed=2, drift=0.25), schema)
    pd.testing.assert_frame_equal(typed, expected)
    inputs = to_onnx_inputs(typed, schema)
    assert inputs["plan"].shape == (1_500, 1)


def test_write_demo_refuses_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt must be"):
        write_demo(tmp_path, fmt="xlsx")  # type: ignore[arg-type]


def test_example_schema_file_matches(schema: Schema) -> None:
    assert Schema.load(EXAMPLE_SCHEMA) == schema


@pytest.mark.slow
def test_a_million_rows_are_drawn_whole(schema: Schema) -> None:
    frame = make_churn(1_000_000, seed=0)
    assert len(frame) == 1_000_000
    assert frame["customer_id"].iloc[-1] == "C1000000"
    assert 0.15 <= frame["churned"].mean() <= 0.25
    assert np.isfinite(frame["monthly_charges"]).all()
