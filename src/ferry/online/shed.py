"""The ASGI middleware that sheds load: over ``max_in_flight`` requests at once, answer 503 with Retry-After at once.

A request over the limit is refused before its body is read, so overload costs almost nothing and a client learns
at once to come back, instead of queueing until a gateway gives up (504). Probes and ``/metrics`` are never shed.
"""

from __future__ import annotations

from ferry.online.auth import OPEN_PATHS, ASGIApp, ASGIScope, Receive, Send, send_json
from ferry.online.settings import OnlineSettings

__all__ = ["LoadShedMiddleware"]


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
