"""Progress of a run: rows scored so far as text for the flow's logs, and the rows a run has still to score."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ferry.batch.partitions import count_rows
from ferry.batch.run import Plan

__all__ = ["RowProgress", "expected_rows"]


class RowProgress:
    """An ``on_rows`` callback that reports progress as text at most every ``every_s`` seconds (for flow logs).

    ``report`` receives e.g. ``"day=01: 1,310,720 of 2,500,000 rows (52%), 98,304 rows/s"``; ``total`` is None when
    unknown (CSV partitions), and the share is then left out.
    """

    def __init__(self, report: Callable[[str], None], label: str, total: int | None, *, every_s: float = 10.0) -> None:
        self.report, self.label, self.total, self.every_s = report, label, total, every_s
        self.rows = 0
        self._started = self._last = time.perf_counter()

    def __call__(self, n: int) -> None:
        self.rows += n
        now = time.perf_counter()
        if now - self._last < self.every_s:
            return
        self._last = now
        rate = self.rows / (now - self._started) if now > self._started else 0.0
        share = f" of {self.total:,} rows ({self.rows / self.total:.0%})" if self.total else " rows"
        self.report(f"{self.label}: {self.rows:,}{share}, {rate:,.0f} rows/s")


def expected_rows(p: Plan, *, storage_options: dict[str, Any] | None = None) -> int | None:
    """Rows still to score, when every pending partition is Parquet (read from footers); else None."""
    total = 0
    for part in p.pending:
        n = count_rows(part, storage_options=storage_options)
        if n is None:
            return None
        total += n
    return total
