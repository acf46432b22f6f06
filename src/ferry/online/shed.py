"""Admission by capacity: a share of the service per API key, and slots for requests whose body has arrived.

Two ASGI middlewares, on either side of the body limit (:mod:`ferry.online.limits`), which reads the body with a
time limit:

- :class:`KeyShareMiddleware` (after the key check, before the body is read) lets one key have at most
  ``per_key`` requests in the service at once, a slow body still arriving included; more get 429 at once. So no
  client, with any valid key, can hold every place by sending headers and then stalling.
- :class:`LoadShedMiddleware` (after the body is read) lets ``max_in_flight`` requests be handled at once; more get
  503 with Retry-After at once, so overload costs almost nothing and a client learns at once to come back, instead
  of queueing until a gateway gives up (504). A request takes a slot only once its body is in: a stalled client
  holds none.

Probes and ``/metrics`` are never limited.
"""

from __future__ import annotations

from collections import Counter

from ferry.online.auth import KEY_NAME, OPEN_PATHS, REFUSED, ASGIApp, ASGIScope, Receive, Send, send_json
from ferry.online.settings import OnlineSettings, per_key_limit

__all__ = ["KeyShareMiddleware", "LoadShedMiddleware"]


class LoadShedMiddleware:
    """Counts requests in flight; ``max_in_flight`` None: read :class:`OnlineSettings` on first use."""

    def __init__(self, app: ASGIApp, max_in_flight: int | None = None, retry_after_s: int | None = None) -> None:
        self.app = app
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

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        limit, retry = self._limits()
        if self.in_flight >= limit:  # one event loop: the check and the increment cannot interleave
            self.shed += 1
            scope[REFUSED] = "max_in_flight"
            await send_json(
                send,
                503,
                {"error": f"over capacity ({limit} requests in flight); retry after {retry} s"},
                [(b"retry-after", str(retry).encode())],
            )
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class KeyShareMiddleware:
    """Counts each key's requests in the service; ``per_key`` None: read :class:`OnlineSettings` on first use."""

    def __init__(self, app: ASGIApp, per_key: int | None = None, retry_after_s: int | None = None) -> None:
        self.app = app
        self._per_key = per_key
        self._retry = retry_after_s
        self.active: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def _limits(self) -> tuple[int, int]:
        if self._per_key is None or self._retry is None:
            settings = OnlineSettings()
            self._per_key = per_key_limit(settings) if self._per_key is None else self._per_key
            self._retry = settings.retry_after_s if self._retry is None else self._retry
        return self._per_key, self._retry

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        key = scope.get(KEY_NAME)
        if scope["type"] != "http" or key is None or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        limit, retry = self._limits()
        if self.active[key] >= limit:  # one event loop: the check and the increment cannot interleave
            self.refused[key] += 1
            scope[REFUSED] = "key_share"
            await send_json(
                send,
                429,
                {"error": f"this API key has {limit} requests in the service already; retry after {retry} s"},
                [(b"retry-after", str(retry).encode())],
            )
            return
        self.active[key] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active[key] -= 1
            if not self.active[key]:
                del self.active[key]
