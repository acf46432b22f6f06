"""Monitor and status for a fleet of 100, 1,000 and 10,000 devices: time and peak RSS, as ratios to 100 devices.

    uv run python bench/fleet.py [--devices 100 1000 10000] [--interval-minutes 60] [--hours 24]

Each fleet sends a day of heartbeats (one per device every ``--interval-minutes``) through the real telemetry path:
the edge agent's ``Heartbeats.build`` makes each heartbeat, with a drift sketch made by its ``DriftSketch`` (a
pool of 16 sketches of demo rows, since sketching rows is the device's cost, not the monitor's), and the online
service's ``Collector`` checks it and writes it to the registry's telemetry log (``TelemetryLog``, Parquet files of
1,000 heartbeats), exactly as ``POST /telemetry`` does. Devices follow ``edge/stable`` (80 %), ``edge/beta`` (15 %)
and ``edge/canary`` (5 %); every 50th device runs an older version.

Then, each in a fresh process, so that its peak RSS is its own:

1. **monitor**: what the monitor flow does with telemetry in ``gather``: ``edge_since`` (every heartbeat of the day
   streamed into one sketch per cohort, each device's latest heartbeat kept) and ``status.remember_devices``, and
   the cohorts' frames that the judging tasks get;
2. **status**: ``ferry status``'s work: ``status.collect`` and ``status.to_markdown``.

Prints heartbeats, time, peak RSS and the RSS the work added above the process after its imports, and each as a
ratio to the 100-device fleet measured in the same run. Linear growth is a time ratio equal to the device ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    """The current resident set size of this process, in MB (from /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_fleet(registry_url: str, devices: int, interval_minutes: float, hours: float) -> int:
    """A day of heartbeats of ``devices`` devices written through the agent's builder and the service's collector."""
    from ferry_edge.telemetry import DriftSketch, Heartbeats

    from ferry.cli.parity import records
    from ferry.demo_data import churn_schema, make_churn
    from ferry.online.telemetry import Collector, TelemetryLog

    schema = churn_schema()
    features = schema.to_dict()["features"]
    pool = []
    for i in range(16):
        sketch = DriftSketch(features)
        sketch.update(records(make_churn(120, seed=300 + i, drift=0.1 * (i % 4)), schema))
        pool.append(sketch.to_dict())
    channel_of = [
        "edge/stable" if d % 100 < 80 else "edge/beta" if d % 100 < 95 else "edge/canary" for d in range(devices)
    ]
    log = TelemetryLog(registry_url, "churn", buffer_rows=1000)
    collector = Collector(log, "churn")
    builder = Heartbeats(Path(tempfile.mkdtemp(prefix="ferry-bench-agent-")), "unused")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    beats = int(hours * 60 / interval_minutes)
    for tick in range(beats):
        at = (start + timedelta(minutes=tick * interval_minutes)).isoformat(timespec="seconds")
        for d in range(devices):
            status = {
                "device": f"device-{d:07d}",
                "model": "churn",
                "channel": channel_of[d],
                "active_version": "v1" if d % 50 == 0 else "v2",
                "active_sha256": "ab" * 32,
            }
            beat = builder.build(status, None)
            beat["sketch"], beat["sent_at"] = pool[(d + tick) % len(pool)], at
            collector.accept(beat)
    log.flush()
    shutil.rmtree(builder.home, ignore_errors=True)
    return beats * devices


def run_task(task: str, registry_url: str) -> dict[str, float]:
    """One measurement in this process: ``monitor`` or ``status`` (see the module docstring)."""
    from ferry import monitor, status
    from ferry.demo_data import churn_schema
    from ferry.registry import Registry

    registry = Registry(registry_url)
    schema = churn_schema()
    base = _rss_mb()
    started = time.perf_counter()
    if task == "monitor":
        sources, devices, _ = monitor.edge_since(registry, "churn", schema, None)
        status.remember_devices(registry, "churn", devices)
        rows = sum(len(s.frame) for s in sources)
        if not rows:
            raise SystemExit("no cohort was gathered")
    else:
        view = status.collect(registry, "churn")
        text = status.to_markdown(view)
        if not view.devices or not text:
            raise SystemExit("status found no devices")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": _peak_mb(), "added_mb": max(0.0, _peak_mb() - base)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument("--interval-minutes", type=float, default=60.0, help="minutes between a device's heartbeats")
    parser.add_argument("--hours", type=float, default=24.0, help="hours of heartbeats (default a day)")
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        print(json.dumps(run_task(args.task, args.registry)))
        return
    if not 0 < args.interval_minutes <= args.hours * 60:
        raise SystemExit("--interval-minutes must be positive and at most --hours * 60")

    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-fleet-"))
    try:
        results: dict[int, dict[str, Any]] = {}
        for devices in args.devices:
            registry = str(tmp / f"fleet-{devices}" / "registry")
            started = time.perf_counter()
            heartbeats = write_fleet(registry, devices, args.interval_minutes, args.hours)
            results[devices] = {"heartbeats": heartbeats, "write_s": time.perf_counter() - started}
            for task in ("monitor", "status"):
                out = subprocess.run(
                    [sys.executable, __file__, "--task", task, "--registry", registry],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[devices][task] = json.loads(out.stdout.strip().splitlines()[-1])
        base = results[args.devices[0]]
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"fleet telemetry: a heartbeat every {args.interval_minutes:g} min for {args.hours:g} h per device, "
            f"written through Heartbeats.build and the service's Collector; each task in a fresh process"
        )
        print(
            f"{'devices':>8} {'heartbeats':>10} {'task':8} {'seconds':>8} {'peak MB':>8} {'added MB':>8} "
            f"{'x devices':>9} {'x time':>7} {'x peak':>7} {'x added':>7}"
        )
        for devices, r in results.items():
            for task in ("monitor", "status"):
                m, b = r[task], base[task]
                print(
                    f"{devices:>8} {r['heartbeats']:>10} {task:8} {m['seconds']:>8.2f} {m['peak_mb']:>8.0f} "
                    f"{m['added_mb']:>8.1f} {devices / args.devices[0]:>9.0f} {m['seconds'] / b['seconds']:>7.1f} "
                    f"{m['peak_mb'] / b['peak_mb']:>7.2f} {m['added_mb'] / max(b['added_mb'], 0.1):>7.1f}"
                )
        for devices, r in results.items():
            print(f"{devices} devices: writing the day's heartbeats took {r['write_s']:.0f} s (not measured above)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
