"""The online service's front door: the one ASGI middleware every request passes, taking it through the admission
steps in order, and answering the fast lane's paths itself.

1. Every request is counted, by endpoint and status, with its time (:mod:`ferry.online.metrics`); a refusal also by
   its rule and key, and against its client host, which makes a host that keeps failing a suspect.
2. The key (:mod:`ferry.online.auth`): the probes, ``/metrics`` (unless it requires a key) and the API docs (unless
   they require one) are open; any other path needs a key with the path's scope (401, 403). A 401 to a suspect host
   waits in the tarpit (:mod:`ferry.online.tarpit`) and closes its connection.
3. The key's rate, daily quota and share of the service (429 with Retry-After, :class:`~ferry.online.shed.KeyShare`),
   before the body is read, so that one key's stalled bodies cannot hold every place.
4. The body, whole, within a size (413) and a time (408) (:mod:`ferry.online.limits`).
5. A slot (503 with Retry-After over ``max_in_flight``, :class:`~ferry.online.shed.LoadShed`), taken only once the
   body is in, so a stalled client holds none. Probes and ``/metrics`` are never limited.
6. The answer: the fast lane's paths (:mod:`ferry.online.lane`) are answered here; any other request goes on to
   BentoML with its body.

These were six middlewares, one per step, each wrapping the next (and its ``send`` or ``receive``); as plain calls
in one, each request crosses one layer, and the order is written down once, here (the figures are in
``bench/README.md``, "online.py"). Until the service instance
attaches its :class:`~ferry.online.app.OnlineApp` to the :class:`Attached`, requests are admitted and go to BentoML,
uncounted.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ferry.online.auth import OPEN_PATHS, ASGIApp, ASGIScope, Guard, Message, Receive, Refusal, Send
from ferry.online.lane import Lane
from ferry.online.limits import BodyLimit
from ferry.online.settings import ApiKeyEntry
from ferry.online.shed import KeyShare, LoadShed

if TYPE_CHECKING:
    from ferry.online.app import OnlineApp

__all__ = ["Attached", "FrontDoor"]

log = logging.getLogger("ferry.online.front")


class Attached:
    """Where the service instance attaches its :class:`~ferry.online.app.OnlineApp` (None: nothing is counted and
    BentoML answers every admitted request)."""

    def __init__(self) -> None:
        self.app: OnlineApp | None = None


class _Outcome:
    """What a request came to, for the metrics: the status sent, the rule of a refusal, the key's name."""

    __slots__ = ("key", "rule", "status")

    def __init__(self) -> None:
        self.status = 500  # what the server answers when the app raises before it starts a response
        self.rule: str | None = None
        self.key: str | None = None


class FrontDoor:
    """ASGI middleware: admission in order, then the fast lane or ``app`` (see the module docstring). Each step's
    policy may be given (tests); by default each reads :class:`~ferry.online.settings.OnlineSettings` on first use."""

    def __init__(
        self,
        app: ASGIApp,
        attached: Attached,
        *,
        guard: Guard | None = None,
        share: KeyShare | None = None,
        body: BodyLimit | None = None,
        shed: LoadShed | None = None,
        lane: Lane | None = None,
    ) -> None:
        self.app = app
        self.attached = attached
        self.guard = guard if guard is not None else Guard()
        self.share = share if share is not None else KeyShare()
        self.body = body if body is not None else BodyLimit()
        self.shed = shed if shed is not None else LoadShed()
        self.lane = lane if lane is not None else Lane()

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        online = self.attached.app
        path = str(scope.get("path", ""))
        outcome = _Outcome()
        if online is None:
            await self._admit(scope, receive, send, path, None, outcome)
            return
        metrics = online.metrics
        metrics.http_started(path)
        started = time.perf_counter()
        try:
            await self._admit(scope, receive, send, path, online, outcome)
        finally:
            metrics.http_request(path, outcome.status, time.perf_counter() - started)
            if outcome.status >= 400 and path not in OPEN_PATHS:
                client = scope.get("client")
                host = str(client[0]) if client else "-"
                metrics.refused(outcome.status, outcome.rule or "other", outcome.key or "-", host)

    async def _admit(
        self, scope: ASGIScope, receive: Receive, send: Send, path: str, online: OnlineApp | None, outcome: _Outcome
    ) -> None:
        headers = scope.get("headers") or []
        decision = self.guard.decide(path, headers)
        key: str | None = None
        entry: ApiKeyEntry | None = None
        if decision is not None:
            outcome.key = decision.key_name
            if decision.status != 200:
                log.info(
                    "refused %s %s: %s (key %s)",
                    scope.get("method"), path[:200], decision.why or decision.reason, decision.key_name,
                )  # fmt: skip
                extra = ((b"www-authenticate", b"Bearer"),) if decision.status == 401 else ()
                denied = Refusal(decision.status, {"error": decision.reason}, decision.why or "refused", extra)
                await self._refuse(denied, scope, send, path, online, outcome)
                return
            if path not in OPEN_PATHS:
                key, entry = decision.key_name, decision.entry
        if key is not None:
            refusal = self.share.admit(key, entry)
            if refusal is not None:
                await self._refuse(refusal, scope, send, path, online, outcome)
                return
        try:
            message = await self.body.read(headers, receive)
            if isinstance(message, Refusal):
                await self._refuse(message, scope, send, path, online, outcome)
                return
            if path in OPEN_PATHS:
                await self._answer(scope, receive, send, path, online, message, outcome)
                return
            refusal = self.shed.admit()
            if refusal is not None:
                await self._refuse(refusal, scope, send, path, online, outcome)
                return
            try:
                await self._answer(scope, receive, send, path, online, message, outcome)
            finally:
                self.shed.release()
        finally:
            if key is not None:
                self.share.release(key)

    async def _answer(
        self,
        scope: ASGIScope,
        receive: Receive,
        send: Send,
        path: str,
        online: OnlineApp | None,
        message: Message,
        outcome: _Outcome,
    ) -> None:
        if online is not None:
            method = str(scope.get("method", ""))
            taken = self.lane.take(online, method, path)
            if taken is not None:
                body = message.get("body", b"") if message["type"] == "http.request" else b""
                retry = online.settings.retry_after_s
                outcome.status, outcome.rule = await self.lane.answer(taken, method, path, body, send, retry)
                return

        async def counted(sent: Message) -> None:
            if sent["type"] == "http.response.start":
                outcome.status = int(sent["status"])
            await send(sent)

        await self.app(scope, _replay(message, receive if message["type"] == "http.request" else None), counted)

    async def _refuse(
        self, refusal: Refusal, scope: ASGIScope, send: Send, path: str, online: OnlineApp | None, outcome: _Outcome
    ) -> None:
        outcome.status, outcome.rule = refusal.status, refusal.rule
        if refusal.status == 401 and online is not None and path not in OPEN_PATHS:
            client = scope.get("client")
            if await online.tarpit.hold(str(client[0]) if client else "-"):
                await refusal.send(send, (b"connection", b"close"))
                return
        await refusal.send(send)


def _replay(message: Message, then: Receive | None) -> Receive:
    """``receive`` for the app: the body read already, then what the server says next (or a disconnect)."""
    pending = [message]

    async def receive() -> Message:
        if pending:
            return pending.pop()
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
