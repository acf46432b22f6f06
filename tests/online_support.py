"""Helpers shared by the online service's test modules (not fixtures: those live in conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_online import demo_records

from ferry.schema import Schema


def edge_heartbeat(champion: dict[str, str], home: Path, collector: str, *, token: str | None, rows: int = 40) -> Any:
    """A real ``ferry_edge.telemetry.Heartbeats`` for ``collector`` and one heartbeat it built, with a drift sketch
    over ``rows`` demo records, as a device running the champion would send it."""
    from ferry_edge.telemetry import DriftSketch, Heartbeats

    schema = Schema.load(champion["schema"])
    sketch = DriftSketch([{"name": f.name, "type": f.type} for f in schema.features])
    sketch.update(demo_records(champion, rows))
    beats = Heartbeats(home, collector, token=token, timeout_s=10)
    status = {
        "device": "pump-17",
        "model": "churn",
        "channel": "edge/stable",
        "active_version": champion["version"],
        "active_sha256": "ab" * 32,
        "last_error": None,
        "stale": False,
    }
    return beats, beats.build(status, sketch)
