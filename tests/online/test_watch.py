"""Intrusion signals decided from the service's counters (:mod:`ferry.online.watch`), and the ``security-watch``
flow that emits them as ``ferry.security.*`` events, checked on a real Prefect server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferry.online.settings import WatchSettings
from ferry.online.watch import REFUSALS, SUSPECTS, Reading, alerts, check, parse


def metrics_text(refused: dict[tuple[int, str, str], int], suspects: int, tarpitted: int = 0) -> str:
    lines = ["# TYPE ferry_online_refused_total counter"]
    lines += [
        f'ferry_online_refused_total{{status="{s}",reason="{r}",key="{k}"}} {n}' for (s, r, k), n in refused.items()
    ]
    lines += [f"ferry_online_suspect_clients_total {suspects}", f"ferry_online_tarpitted_total {tarpitted}"]
    lines += ['ferry_online_http_requests_total{endpoint="/predict",status="200"} 12']
    return "\n".join(lines) + "\n"


def test_the_counters_are_read_from_the_metrics_text() -> None:
    reading = parse(metrics_text({(401, "no_key", "-"): 7, (429, "rate", "shop"): 2}, 3, 5))
    assert reading == Reading({(401, "no_key", "-"): 7, (429, "rate", "shop"): 2}, 3, 5)
    assert Reading.from_json(reading.to_json()) == reading


def test_events_only_for_what_crossed_a_threshold_since_the_last_reading() -> None:
    settings = WatchSettings(refusals=10, suspects=1)
    base = Reading({(401, "no_key", "-"): 100}, 2)
    assert alerts(None, base, settings, service="s") == []  # the first reading is the base
    assert alerts(base, Reading({(401, "no_key", "-"): 109}, 2), settings, service="s") == []
    found = alerts(
        base, Reading({(401, "no_key", "-"): 105, (401, "unknown_key", "-"): 6}, 3, 4), settings, service="s"
    )
    assert [a.event for a in found] == [REFUSALS, SUSPECTS]
    assert found[0].payload["refused"] == 11
    assert found[0].payload["by_reason"] == {"401 unknown_key": 6, "401 no_key": 5}
    assert found[1].payload == {"service": "s", "new_suspects": 1, "tarpitted": 4}
    # a restarted service reads lower: its counters count from zero
    restarted = alerts(base, Reading({(401, "no_key", "-"): 12}, 0), settings, service="s")
    assert [a.event for a in restarted] == [REFUSALS]
    assert restarted[0].payload["refused"] == 12


def test_an_unreachable_service_is_named(tmp_path: Path) -> None:
    from ferry.errors import ConfigError

    with pytest.raises(ConfigError, match=r"cannot read the service.s metrics at http://127\.0\.0\.1:9/metrics"):
        check(str(tmp_path / "registry"), "churn", "http://127.0.0.1:9/metrics")


@pytest.mark.integration
def test_the_watch_flow_emits_security_events_to_a_real_prefect_server(
    prefect_server: None, serve_dir: Callable[[Path], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow reads /metrics of a real HTTP server twice: the first reading is the base, the second crosses both
    thresholds; the two events reach the Prefect server with their payloads."""
    import asyncio

    from prefect.client.orchestration import get_client

    from ferry_flows.security import security_watch

    site = tmp_path / "site"
    site.mkdir()
    (site / "metrics").write_text(metrics_text({(401, "no_key", "-"): 3}, 0))
    url = serve_dir(site) + "/metrics"
    registry = str(tmp_path / "registry")
    monkeypatch.setenv("FERRY_SECURITY_REFUSALS", "50")
    assert security_watch(metrics_url=url, model="churn", registry_url=registry) == []
    (site / "metrics").write_text(metrics_text({(401, "no_key", "-"): 80, (401, "unknown_key", "-"): 40}, 2, 9))
    started = time.time()
    found = security_watch(metrics_url=url, model="churn", registry_url=registry)
    assert [a["event"] for a in found] == ["ferry.security.refusals", "ferry.security.suspects"]

    async def events() -> list[dict[str, Any]]:
        async with get_client() as client:
            response = await client._client.post(
                "/events/filter",
                json={
                    "filter": {"event": {"prefix": ["ferry.security."]}, "resource": {"id": ["ferry.service.churn"]}}
                },
            )
            response.raise_for_status()
            return list(response.json()["events"])

    deadline = time.monotonic() + 60
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = [
            e
            for e in asyncio.run(events())
            if e["occurred"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started - 60))
        ]
        if {e["event"] for e in seen} >= {"ferry.security.refusals", "ferry.security.suspects"}:
            break
        time.sleep(0.5)
    by_name = {e["event"]: e for e in seen}
    assert set(by_name) >= {"ferry.security.refusals", "ferry.security.suspects"}, seen
    assert by_name["ferry.security.refusals"]["payload"]["refused"] == 117
    assert by_name["ferry.security.suspects"]["payload"]["new_suspects"] == 2
    assert "117 requests refused" in by_name["ferry.security.refusals"]["payload"]["summary"]
