"""The Evidently gate adapter: floors, champion comparison, data quality, and failing closed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ferry import gate
from ferry.schema import Schema
from ferry.settings import GateSettings

SCHEMA = Schema.from_dict(
    {
        "name": "toy",
        "target": "y",
        "features": [{"name": "a", "type": "numeric"}, {"name": "c", "type": "categorical"}],
    }
)


def scores(n: int, strength: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities whose ROC AUC grows with ``strength``."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    logit = strength * (y - 0.3) * 4 + rng.normal(size=n)
    return y, 1 / (1 + np.exp(-logit))


def by_name(checks: list[gate.Check]) -> dict[str, gate.Check]:
    return {c.name: c for c in checks}


def test_first_model_is_judged_on_floors_alone(tmp_path: Path) -> None:
    y, p = scores(2000, 1.0)
    checks, champ = gate.model_quality(y, p, GateSettings(), html_path=tmp_path / "q.html")
    found = by_name(checks)
    assert champ == {}
    assert set(found) == {"model.roc_auc_floor", "model.f1_floor"}
    assert all(c.source == "evidently" for c in checks)
    assert found["model.roc_auc_floor"].passed
    assert found["model.roc_auc_floor"].threshold == ">= 0.7"
    assert isinstance(found["model.roc_auc_floor"].observed, float)
    assert (tmp_path / "q.html").stat().st_size > 10_000
    assert gate.decide(checks, champion=None).passed


def test_gate_rejects_a_candidate_worse_than_the_champion() -> None:
    y, strong = scores(2000, 1.0, seed=1)
    _, weak = scores(2000, 0.45, seed=2)
    weak = np.where(y == 1, weak, weak)  # same holdout labels, weaker model
    settings = GateSettings(min_roc_auc=0.5, min_f1=0.0)
    checks, champ = gate.model_quality(y, weak, settings, champion_answers=strong, champion="abc123")
    result = gate.decide(checks, champion="abc123")
    vs = by_name(checks)["model.roc_auc_vs_champion"]
    assert not vs.passed
    assert champ["roc_auc"] > float(vs.observed)  # type: ignore[arg-type]
    assert "abc123" in vs.detail
    assert not result.passed
    assert any("model.roc_auc_vs_champion" in r for r in result.reasons)


def test_gate_accepts_a_candidate_within_tolerance_of_the_champion() -> None:
    y, champion = scores(2000, 1.0, seed=3)
    settings = GateSettings(tolerance=0.05)
    checks, _ = gate.model_quality(y, champion, settings, champion_answers=champion, champion="abc123")
    assert by_name(checks)["model.roc_auc_vs_champion"].passed
    assert gate.decide(checks, champion="abc123").passed


def test_absolute_floor_rejects_a_weak_first_model() -> None:
    y, p = scores(2000, 0.1)
    checks, _ = gate.model_quality(y, p, GateSettings(min_roc_auc=0.9))
    assert not by_name(checks)["model.roc_auc_floor"].passed
    assert not gate.decide(checks, champion=None).passed


def test_gate_fails_closed_when_evidently_raises() -> None:
    """NaN scores make Evidently's ROC AUC raise; the gate must turn that into a recorded failure."""
    y, p = scores(500, 1.0)
    p[::7] = np.nan
    checks: list[gate.Check] = []
    error = gate.fail_closed(lambda: gate.model_quality(y, p, GateSettings())[0], checks)
    assert error is not None
    result = gate.decide(checks, champion=None, error=error)
    assert not result.passed
    assert result.error == error
    assert result.reasons[0].startswith("gate error (fails closed)")


def test_gate_fails_closed_on_timeout() -> None:
    y, p = scores(2000, 1.0)
    checks: list[gate.Check] = []
    error = gate.fail_closed(lambda: gate.model_quality(y, p, GateSettings(timeout_s=1e-6))[0], checks)
    assert error is not None
    assert "did not finish within" in error
    assert not gate.decide(checks, champion=None, error=error).passed


def test_no_checks_means_no_promotion() -> None:
    result = gate.decide([], champion=None)
    assert not result.passed
    assert result.reasons == ("no checks ran (fails closed)",)


def test_data_quality_checks_missing_share_duplicates_and_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1000
    frame = pd.DataFrame({"a": rng.normal(size=n), "c": rng.choice(["x", "y"], n).astype(object), "y": 0})
    frame.loc[: int(0.4 * n), "a"] = np.nan  # 40% missing
    frame = pd.concat([frame, frame.iloc[500:600]], ignore_index=True)  # 100 duplicated rows
    checks = by_name(gate.data_quality(frame, SCHEMA, GateSettings(), html_path=tmp_path / "dq.html"))
    assert not checks["data.missing_share[a]"].passed
    assert checks["data.missing_share[a]"].observed == pytest.approx(401 / 1100)
    assert checks["data.missing_share[c]"].passed
    assert not checks["data.duplicated_rows"].passed
    assert checks["data.row_count"].passed
    assert checks["data.schema_columns"].passed
    assert (tmp_path / "dq.html").exists()


def test_gate_result_round_trips_through_json() -> None:
    y, p = scores(1000, 1.0)
    checks, _ = gate.model_quality(y, p, GateSettings())
    result = gate.decide(checks, champion=None)
    import json

    again = gate.GateResult.from_dict(json.loads(result.to_json()))
    assert again == result


def test_input_drift_is_detected_on_drifted_data_and_not_on_fresh_reference_data(tmp_path: Path) -> None:
    from ferry.demo_data import churn_schema, make_churn
    from ferry.gate import input_drift

    schema = churn_schema()
    reference = make_churn(3000, seed=31)
    same = input_drift(reference, make_churn(2000, seed=32), schema)
    assert not same.drifted
    assert same.drifted_share < 0.2
    current = make_churn(2000, seed=33, drift=1.0)
    drifted = input_drift(reference, current, schema, drift_share=0.3, html_path=tmp_path / "d.html")
    assert drifted.drifted
    assert not input_drift(reference, current, schema, drift_share=0.9).drifted  # the share is the user's to set
    assert {"device_os", "support_calls", "contract"} <= set(drifted.drifted_features)
    assert len(drifted.columns) == len(schema.features)
    assert all(c.method and c.threshold is not None for c in drifted.columns)
    assert (tmp_path / "d.html").stat().st_size > 10_000
    assert (tmp_path / "d.evidently.json").exists()
    assert drifted.to_dict()["drifted"] is True


def test_prediction_drift_on_a_probability_column() -> None:
    from ferry.gate import data_drift

    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"p": rng.beta(2, 8, 4000)})
    assert not data_drift(reference, pd.DataFrame({"p": rng.beta(2, 8, 3000)}), numeric=["p"]).drifted
    shifted = data_drift(reference, pd.DataFrame({"p": rng.beta(5, 5, 3000)}), numeric=["p"])
    assert shifted.drifted
    assert shifted.drifted_features == ["p"]


@pytest.mark.parametrize(
    ("current", "message"),
    [
        (pd.DataFrame({"q": [0.1]}), r"current data lacks column\(s\) \['p'\]"),
        (pd.DataFrame({"p": []}), "current data has no rows"),
    ],
)
def test_drift_names_a_missing_column_or_an_empty_sample(current: pd.DataFrame, message: str) -> None:
    from ferry.errors import GateError
    from ferry.gate import data_drift

    with pytest.raises(GateError, match=message):
        data_drift(pd.DataFrame({"p": [0.1, 0.2]}), current, numeric=["p"])
