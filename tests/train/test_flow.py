"""The retrain flow for real, under one session-scoped ephemeral Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import artifacts_of

from ferry import demo_data
from ferry.registry import Registry

pytestmark = pytest.mark.integration


def test_retrain_flow_leaves_a_version_and_readable_artifacts(
    prefect_server: None, ferry_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry.publish import open_repository
    from ferry.publish.tufrepo import describe
    from ferry_flows.retrain import retrain

    monkeypatch.setenv("FERRY_EDGE_REPO_URL", str(ferry_env / "edge-repo"))
    monkeypatch.setenv("FERRY_EDGE_KEYS_DIR", str(ferry_env / "edge-keys"))
    schema = ferry_env / "schema.yaml"
    schema.write_text(demo_data.churn_schema().dump_yaml())
    data = demo_data.write_demo(ferry_env / "data", n_rows=5000, seed=3, fmt="parquet")

    channels = ["online/champion", "edge/beta"]
    state = retrain(data=str(data), schema_file=str(schema), promote_to=channels, return_state=True)
    assert state.is_completed()
    outcome = state.result()
    assert outcome["gate_passed"], outcome["reasons"]
    assert outcome["promoted"] == channels

    registry = Registry(str(ferry_env / "registry"))
    assert registry.channel("churn", "online/champion") == outcome["version"]
    assert Path(outcome["gate_html"]).exists()
    # The edge channel that moved is published in the same run.
    assert [p["target"] for p in outcome["published"]] == ["churn/edge-beta/bundle.tar"]
    assert describe(open_repository())["targets"]["churn/edge-beta/bundle.tar"]["version"] == outcome["version"]

    found = artifacts_of(state.state_details.flow_run_id)
    assert set(found) == {
        "churn-retrain-summary",
        "churn-metrics",
        "churn-gate",
        "churn-gate-report",
        "churn-data-quality-report",
        "churn-model-card",
        "churn-importance",
        "churn-plots",
    }
    summary = found["churn-retrain-summary"].data
    assert outcome["version"] in summary
    assert "**promoted**" in summary
    gate_rows = found["churn-gate"].data
    assert "onnx.parity_max_abs_diff" in str(gate_rows)
    assert "](file://" in found["churn-gate-report"].data
    card = found["churn-model-card"].data
    assert card.startswith(f"# Model card: churn {outcome['version']}")
    assert "## Known limits" in card
    assert "## Global importance" in card
    # the importance table names every feature once; the pictures artifact links each picture the version carries
    importance = found["churn-importance"].data
    schema_features = demo_data.churn_schema().feature_names
    rows = importance if isinstance(importance, list) else json.loads(importance)
    assert sorted(str(r["feature"]).replace("\\", "") for r in rows) == sorted(schema_features)
    version = registry.get(outcome["version"], model="churn")
    assert set(outcome["plots"]) == {
        "plot_importance.svg",
        "plot_waterfall.svg",
        "plot_roc.svg",
        "plot_calibration.svg",
    }
    for name in outcome["plots"]:
        assert name in version.files
        assert f"[{name}](file://" in found["churn-plots"].data


def test_retrain_flow_fails_clearly_on_bad_data(prefect_server: None, ferry_env: Path) -> None:
    from ferry.errors import DataValidationError
    from ferry_flows.retrain import retrain

    schema = ferry_env / "schema.yaml"
    schema.write_text(demo_data.churn_schema().dump_yaml())
    bad = ferry_env / "bad.csv"
    demo_data.make_churn(1000, seed=1).drop(columns=["contract"]).to_csv(bad, index=False)
    with pytest.raises(DataValidationError, match="contract"):
        retrain(data=str(bad), schema_file=str(schema))
    assert Registry(str(ferry_env / "registry")).models() == []
