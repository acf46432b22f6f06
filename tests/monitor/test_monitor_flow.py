"""The monitor flow for real, under the session's ephemeral Prefect server: artifacts, history, state, and the
same drift not announced twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import artifacts_of, beats_from, copy_clean, serve_rows, traffic

from ferry import monitor as core
from ferry.cli.parity import records
from ferry.demo_data import churn_schema, make_churn
from ferry.registry import Registry

pytestmark = pytest.mark.integration


def test_monitor_flow_announces_new_drift_once_and_leaves_evidence(
    prefect_server: None, churn_champion: dict[str, str], tmp_path: Path
) -> None:
    from ferry_flows.monitor import monitor

    registry = copy_clean(churn_champion["registry"], tmp_path / "registry")
    schema = churn_schema()
    settings = core.MonitorSettings(min_rows=100)
    folder = tmp_path / "collector"
    serve_rows(registry, records(make_churn(500, seed=81, drift=1.0), schema))
    beats_from(tmp_path, "dev", [make_churn(300, seed=82)], "edge/stable", folder)

    state = monitor(registry_url=registry.url, telemetry_folder=str(folder), settings=settings, return_state=True)
    assert state.is_completed()
    first = state.result()["models"]["churn"]  # every model of the registry by default
    by = {j["source"]: j for j in first["judgements"]}
    assert set(by) == {"online", "edge:edge/stable"}
    assert by["online"]["drifted"]
    assert not by["edge:edge/stable"]["drifted"]
    assert [(a["source"], a["announce"], a["retrain"]) for a in first["announcements"]] == [("online", True, True)]
    assert Path(by["online"]["report"]).stat().st_size > 10_000
    assert [d["device"] for d in first["devices"]] == ["dev-0"]
    found = artifacts_of(state.state_details.flow_run_id)
    assert {"churn-drift", "churn-drift-online", "churn-drift-report-online", "churn-drift-history"} <= set(found)
    assert "device_os" in str(found["churn-drift-online"].data)

    # Nothing new: nothing judged. The same drift again: judged, but not announced (no second retrain request).
    again = monitor(model="churn", registry_url=registry.url, telemetry_folder=str(folder), settings=settings)
    assert again["judgements"] == []
    serve_rows(registry, records(make_churn(500, seed=83, drift=1.0), schema))
    logged = core.logged_since(registry, "churn", days=1)
    labels = tmp_path / "labels.parquet"
    logged.assign(label=logged["prediction"])[["prediction_id", "label"]].to_parquet(labels)
    folder_ = str(folder)
    third = monitor(
        model="churn", registry_url=registry.url, telemetry_folder=folder_, settings=settings, labels_url=str(labels)
    )
    champion = registry.channel("churn", "online/champion")
    assert third["quality"][champion]["labelled"] == 1000
    assert third["quality"][champion]["accuracy"] == 1.0
    assert third["judgements"][0]["drifted"]
    assert not any(a["retrain"] for a in third["announcements"])  # cooling down whatever the sample shows
    history = core.history(registry, "churn")
    assert [(h["source"], h["announced"]) for h in history][:2] == [("online", True), ("edge:edge/stable", False)]
    assert core.MonitorState.load(registry, "churn").last_retrain_request is not None
    assert first["rollout"]["decision"] == "none"  # no challenger yet


def test_monitor_flow_promotes_a_challenger_after_its_window_and_publishes_edge_stable(
    prefect_server: None, staged: tuple[Registry, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry.monitor.rollout import RolloutSettings
    from ferry.publish import open_repository
    from ferry.publish.tufrepo import describe
    from ferry_flows.monitor import monitor

    monkeypatch.setenv("FERRY_EDGE_REPO_URL", str(tmp_path / "edge-repo"))
    monkeypatch.setenv("FERRY_EDGE_KEYS_DIR", str(tmp_path / "edge-keys"))
    registry, _, challenger = staged
    traffic(registry, "online/champion", 250, seed=11)
    traffic(registry, "online/challenger", 250, seed=12)
    settings = core.MonitorSettings(min_rows=100)
    window = RolloutSettings(window_hours=0, min_rows=200)
    outcome = monitor(model="churn", registry_url=registry.url, settings=settings, rollout_settings=window)
    assert outcome["rollout"]["decision"] == "promote"
    assert registry.channel("churn", "online/champion") == challenger
    assert registry.channel("churn", "edge/stable") == challenger
    assert describe(open_repository())["targets"]["churn/edge-stable/bundle.tar"]["version"] == challenger
