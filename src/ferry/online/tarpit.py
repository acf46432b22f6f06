"""The tarpit: a client that keeps failing authentication has its further 401s answered slowly.

A flood of requests without a valid key is refused before any body is read and before any slot is taken, but each
refusal still costs the worker's event loop some CPU, and a flooder that sends its next request as soon as the last
is answered keeps that loop busy, so keyed clients wait behind it. Once a client host is a suspect (refused
``suspect_refusals`` times within ``suspect_window_s``, see :class:`~ferry.online.metrics.OnlineMetrics`), each
further 401 it gets is held for ``delay_s`` and sent with ``Connection: close``: a flooder waits instead of sending,
and must connect again. Only 401s are delayed: a request with a valid key, from any host, never waits here.

At most ``max_held`` refusals are held at once (each holds a connection and a task of the worker); past that they
are answered at once, still with ``Connection: close``. The front door (:mod:`ferry.online.front`) asks the tarpit
before it sends a 401.
"""

from __future__ import annotations

import asyncio

from ferry.online.metrics import OnlineMetrics

__all__ = ["Tarpit"]


class Tarpit:
    """Holds 401 answers to suspect hosts for ``delay_s`` (0: never), at most ``max_held`` at once."""

    def __init__(self, metrics: OnlineMetrics, *, delay_s: float, max_held: int) -> None:
        self.metrics = metrics
        self.delay_s = delay_s
        self.max_held = max_held
        self.held = 0
        self.total = 0

    async def hold(self, host: str) -> bool:
        """Wait when ``host`` is a suspect; True when it is (its connection is then closed after the answer)."""
        if self.delay_s <= 0 or not self.metrics.is_suspect(host):
            return False
        self.total += 1
        if self.held >= self.max_held:
            return True
        self.held += 1
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.held -= 1
        return True

    def render(self) -> str:
        return (
            "# HELP ferry_online_tarpitted_total 401 answers to suspect clients that were delayed (tarpit).\n"
            "# TYPE ferry_online_tarpitted_total counter\n"
            f"ferry_online_tarpitted_total {self.total}\n"
        )
