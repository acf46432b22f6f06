"""The ASGI middleware that reads a request body with two limits, before the app parses it: its size (413) and the
time it may take to arrive (408), so that a client that sends headers and then stalls frees its place at once."""

from __future__ import annotations

import asyncio

from ferry.online.auth import REFUSED, ASGIApp, ASGIScope, Message, Receive, Send, send_json
from ferry.online.settings import OnlineSettings

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    """Answers 413 when ``Content-Length`` or the streamed body exceeds ``max_bytes``, and 408 when the body has not
    arrived in full within ``timeout_s`` (None: read settings)."""

    def __init__(self, app: ASGIApp, max_bytes: int | None = None, timeout_s: float | None = None) -> None:
        self.app = app
        self._max = max_bytes
        self._timeout = timeout_s
        self.timed_out = 0

    @property
    def max_bytes(self) -> int:
        if self._max is None:
            self._max = OnlineSettings().max_body_bytes
        return self._max

    @property
    def timeout_s(self) -> float:
        if self._timeout is None:
            self._timeout = OnlineSettings().body_timeout_s
        return self._timeout

    async def _too_large(self, scope: ASGIScope, send: Send) -> None:
        scope[REFUSED] = "max_body_bytes"
        reason = f"the body exceeds {self.max_bytes} bytes; send fewer records per request"
        await send_json(send, 413, {"error": reason, "field": None, "rule": "max_body_bytes"})

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    scope[REFUSED] = "content_length"
                    await send_json(send, 400, {"error": "Content-Length is not a number"})
                    return
                if declared > limit:
                    await self._too_large(scope, send)
                    return
        # Read the body here (the app reads it whole anyway) so that a body without Content-Length is bounded too.
        # One timer for the whole body (asyncio.timeout), not a task per message (asyncio.wait_for): a one-record
        # request arrives in one message, and a task per request cost more CPU than the rest of this middleware.
        chunks: list[bytes] = []
        size = 0
        other: Message | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                more = True
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        other = message
                        break
                    chunk = bytes(message.get("body", b""))
                    size += len(chunk)
                    if size > limit:
                        break
                    chunks.append(chunk)
                    more = bool(message.get("more_body", False))
        except TimeoutError:
            self.timed_out += 1
            scope[REFUSED] = "body_timeout_s"
            reason = f"the body did not arrive in full within {self.timeout_s:g} s; send it at once"
            await send_json(send, 408, {"error": reason, "field": None, "rule": "body_timeout_s"},
                            [(b"connection", b"close")])  # fmt: skip
            return
        if other is not None:
            await self.app(scope, _replay([other]), send)
            return
        if size > limit:
            await self._too_large(scope, send)
            return
        await self.app(
            scope, _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive), send
        )


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
