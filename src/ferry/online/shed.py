"""Admission by capacity: a share of the service per API key, and slots for requests whose body has arrived.

Two steps of the service's front door (:mod:`ferry.online.front`), on either side of the body limit
(:mod:`ferry.online.limits`), which reads the body with a time limit:

- :class:`KeyShare` (after the key check, before the body is read) applies the key's own rate and daily
  quota (429 with Retry-After), and lets one key have at most ``per_key`` requests in the service at once, a slow
  body still arriving included; more get 429 at once. So no
  client, with any valid key, can hold every place by sending headers and then stalling.
- :class:`LoadShed` (after the body is read) lets ``max_in_flight`` requests be handled at once; more get
  503 with Retry-After at once, so overload costs almost nothing and a client learns at once to come back, instead
  of queueing until a gateway gives up (504). A request takes a slot only once its body is in: a stalled client
  holds none.

Probes and ``/metrics`` are never limited.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from ferry.online.auth import Refusal
from ferry.online.settings import ApiKeyEntry, OnlineSettings, per_key_limit

__all__ = ["KeyLimits", "KeyShare", "LoadShed"]


class LoadShed:
    """Counts requests in flight; ``max_in_flight`` None: read :class:`OnlineSettings` on first use."""

    def __init__(self, max_in_flight: int | None = None, retry_after_s: int | None = None) -> None:
        self._max = max_in_flight
        self._retry = retry_after_s
        self.in_flight = 0
        self.shed = 0

    def _limits(self) -> tuple[int, int]:
        if self._max is None or self._retry is None:
            settings = OnlineSettings()
            self._max = settings.max_in_flight if self._max is None else self._max
            self._retry = settings.retry_after_s if self._retry is None else self._retry
        return self._max, self._retry

    def admit(self) -> Refusal | None:
        """Take a slot (give it back with :meth:`release`), or the 503 to answer when every slot is taken."""
        limit, retry = self._limits()
        if self.in_flight >= limit:  # one event loop: the check and the increment cannot interleave
            self.shed += 1
            return Refusal(
                503,
                {"error": f"over capacity ({limit} requests in flight); retry after {retry} s"},
                "max_in_flight",
                ((b"retry-after", str(retry).encode()),),
            )
        self.in_flight += 1
        return None

    def release(self) -> None:
        self.in_flight -= 1


class KeyLimits:
    """Each key's rate (a token bucket of ``rate_per_s`` with ``burst`` tokens) and daily quota, as configured on its
    :class:`~ferry.online.settings.ApiKeyEntry`; counted in this process. ``clock`` and ``today`` are for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, today: Callable[[], date] | None = None) -> None:
        self._clock = clock
        self._today = today or (lambda: datetime.now(UTC).date())
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._used: dict[str, tuple[date, int]] = {}  # key -> (day, requests)

    def take(self, key: str, entry: ApiKeyEntry) -> tuple[str, int] | None:
        """Count one request of ``key``; None when it may go on, else (``rate`` or ``daily_quota``, seconds to wait)."""
        if entry.daily_quota is not None:
            day = self._today()
            used_day, used = self._used.get(key, (day, 0))
            used = used if used_day == day else 0
            if used >= entry.daily_quota:
                midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
                return "daily_quota", max(1, math.ceil((midnight - datetime.now(UTC)).total_seconds()))
        if entry.rate_per_s is not None:
            burst = float(entry.burst or max(1, math.ceil(entry.rate_per_s)))
            now = self._clock()
            tokens, at = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - at) * entry.rate_per_s)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return "rate", max(1, math.ceil((1 - tokens) / entry.rate_per_s))
            self._buckets[key] = (tokens - 1, now)
        if entry.daily_quota is not None:
            self._used[key] = (day, used + 1)
        return None


class KeyShare:
    """Counts each key's requests in the service and applies its rate and daily quota (:class:`KeyLimits`), before
    the body is read; ``per_key`` None: read :class:`OnlineSettings` on first use."""

    def __init__(self, per_key: int | None = None, retry_after_s: int | None = None) -> None:
        self._per_key = per_key
        self._retry = retry_after_s
        self.active: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.limits = KeyLimits()

    def _limits(self) -> tuple[int, int]:
        if self._per_key is None or self._retry is None:
            settings = OnlineSettings()
            self._per_key = per_key_limit(settings) if self._per_key is None else self._per_key
            self._retry = settings.retry_after_s if self._retry is None else self._retry
        return self._per_key, self._retry

    def admit(self, key: str, entry: ApiKeyEntry | None) -> Refusal | None:
        """Count one request of ``key`` in the service (until :meth:`release`), or the 429 to answer: over the key's
        rate or daily quota, or its share of the service already taken."""
        limit, retry = self._limits()
        over = self.limits.take(key, entry) if entry is not None else None
        if over is not None:
            reason, wait_s = over
            self.refused[key] += 1
            return Refusal(
                429,
                {"error": f"this API key is over its {reason.replace('_', ' ')}; retry after {wait_s} s"},
                reason,
                ((b"retry-after", str(wait_s).encode()),),
            )
        if self.active[key] >= limit:  # one event loop: the check and the increment cannot interleave
            self.refused[key] += 1
            return Refusal(
                429,
                {"error": f"this API key has {limit} requests in the service already; retry after {retry} s"},
                "key_share",
                ((b"retry-after", str(retry).encode()),),
            )
        self.active[key] += 1
        return None

    def release(self, key: str) -> None:
        self.active[key] -= 1
        if not self.active[key]:
            del self.active[key]
