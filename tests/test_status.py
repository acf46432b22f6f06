"""What runs where: channels, batch outputs, the online service (asked for real), devices, and the skew."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ferry import status
from ferry.cli import app
from ferry.cli.processes import Service, free_port
from ferry.online.auth import hash_key
from ferry.registry import Registry

KEY = "whereabouts-key"


@pytest.fixture
def registry(staged: tuple[Registry, str, str]) -> Registry:
    return staged[0]


def beat(device: str, channel: str, version: str, at: str) -> dict[str, object]:
    return {"device": device, "channel": channel, "version": version, "sha256": "ab" * 32, "sent_at": at,
            "health": {"ok": True}}  # fmt: skip


def test_devices_behind_and_stale_batch_outputs_are_skew(staged: tuple[Registry, str, str]) -> None:
    registry, champion, challenger = staged
    status.remember_devices(
        registry,
        "churn",
        [
            beat("pump-1", "edge/stable", champion, "2026-01-01T10:00:00+00:00"),
            beat("pump-2", "edge/beta", champion, "2026-01-01T10:00:00+00:00"),  # beta runs the challenger now
            beat("pump-2", "edge/beta", challenger, "2026-01-01T09:00:00+00:00"),  # older: ignored
        ],
    )
    assert status.devices(registry, "churn")["pump-2"]["version"] == champion
    status.note_batch_run(registry, "churn", output="s3://scores/a", version=challenger, rows=10, scored=10)
    view = status.collect(registry, "churn")
    assert view.channels["edge/beta"] == challenger
    assert view.skew == [
        f"the latest batch output s3://scores/a was scored with {challenger}",
        f"device pump-2 on edge/beta runs {champion}, behind {challenger}",
    ]
    md = status.to_markdown(view)
    assert "| pump-1 | edge/stable |" in md
    assert "behind" in md

    result = CliRunner().invoke(app, ["status", "--registry", registry.url], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    assert "(behind)" in result.output
    assert "pump-1" in result.output
    assert "s3://scores/a" in result.output


def test_a_fleet_is_told_by_cohort_not_device_by_device(staged: tuple[Registry, str, str]) -> None:
    registry, champion, challenger = staged
    fleet = [beat(f"pump-{i:03d}", "edge/stable", champion, "2026-01-01T10:00:00+00:00") for i in range(40)]
    fleet += [beat(f"tank-{i:03d}", "edge/beta", champion, "2026-01-01T11:00:00+00:00") for i in range(30)]
    fleet[3]["health"] = {"ok": False}
    status.remember_devices(registry, "churn", fleet)
    view = status.collect(registry, "churn")
    assert view.cohorts == [
        {"channel": "edge/beta", "version": champion, "devices": 30, "unhealthy": 0,
         "last_heartbeat": "2026-01-01T11:00:00+00:00"},
        {"channel": "edge/stable", "version": champion, "devices": 40, "unhealthy": 1,
         "last_heartbeat": "2026-01-01T10:00:00+00:00"},
    ]  # fmt: skip
    assert view.skew == [f"30 devices on edge/beta run {champion}, behind {challenger}"]
    listed = [name for name, _ in status.listed_devices(view)]
    assert listed == ["pump-003", *(f"tank-{i:03d}" for i in range(19))]  # the unhealthy and the behind first
    md = status.to_markdown(view)
    assert f"| edge/beta | `{champion}` | 30 | 0 |" in md
    assert "50 more devices are counted in their cohorts above." in md
    assert "tank-025" not in md


@pytest.mark.integration
def test_status_asks_the_online_service_what_it_serves(
    staged: tuple[Registry, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, champion, _ = staged
    keys = json.dumps([{"name": "ops", "sha256": hash_key(KEY), "scopes": ["predict"]}])
    monkeypatch.chdir(Path(registry.url).parent)  # a relative registry path means the same to the service
    env = {
        "FERRY_REGISTRY_URL": Path(registry.url).name,
        "FERRY_ONLINE_API_KEYS": keys,
        "BENTOML_HOME": str(tmp_path / "bh"),
    }
    with Service(log=tmp_path / "serve.log", env=env) as service:
        view = status.collect(registry, "churn", online_url=service.url, api_key=KEY)
        assert view.online is not None
        assert view.online["version"] == champion
        assert view.skew == []
        result = CliRunner().invoke(
            app, ["status", "--registry", registry.url, "--online-url", service.url, "--api-key", KEY]
        )
        assert result.exit_code == 0, result.output
        assert f"online service: serves {champion}" in result.output
        wrong = status.collect(registry, "churn", online_url=service.url, api_key="wrong")
        assert wrong.skew == [f"online: {service.url} answered 401"]
    gone = status.collect(registry, "churn", online_url=f"http://127.0.0.1:{free_port()}")
    assert gone.skew[0].startswith("online: http://127.0.0.1:")
    assert "did not answer" in gone.skew[0]


def test_a_corrupt_devices_file_reads_as_no_devices(registry: Registry) -> None:
    path = Path(registry.url) / "models" / "churn" / "monitor" / "devices.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{torn")
    assert status.devices(registry, "churn") == {}
    shutil.rmtree(path.parent)
    assert status.collect(registry, "churn").devices == {}
