"""``ferry-edge run``: sync on an interval with jitter, back off exponentially while the repository is unreachable,
and stop cleanly on SIGTERM or SIGINT (an install in progress finishes first)."""

from __future__ import annotations

import random
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

from ferry_edge.agent import Agent
from ferry_edge.errors import BundleRejected, EdgeError, SelfTestIncomplete


@dataclass(frozen=True)
class Schedule:
    interval_s: float = 300.0
    jitter: float = 0.1  # each wait is interval * (1 ± jitter), so a fleet does not hit the host in step
    max_backoff_s: float = 3600.0

    def next_wait(self, failures: int, rng: random.Random) -> float:
        base = self.interval_s if failures == 0 else min(self.max_backoff_s, self.interval_s * 2 ** min(failures, 30))
        return float(base * (1 + rng.uniform(-self.jitter, self.jitter)))


def run(agent: Agent, schedule: Schedule, *, max_cycles: int | None = None, seed: int | None = None) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    agent.collect_leftovers()
    rng = random.Random(seed)
    failures = 0
    cycles = 0
    try:
        while not stop.is_set():
            try:
                result = agent.sync()
                failures = 0
                print(f"sync: {result.detail}", flush=True)
            except (BundleRejected, SelfTestIncomplete) as exc:  # the repository answered: normal interval
                failures = 0  # (a postponed self-test keeps its own backoff in state.json)
                print(f"sync: {exc.kind}: {exc}", file=sys.stderr, flush=True)
            except EdgeError as exc:
                failures += 1
                print(f"sync failed ({failures} in a row): {exc}", file=sys.stderr, flush=True)
            cycles += 1
            if max_cycles is not None and cycles >= max_cycles:
                break
            stop.wait(schedule.next_wait(failures, rng))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("stopped", flush=True)
    return 0
