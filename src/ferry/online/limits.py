"""Reading a request body with two limits, before anything parses it: its size (413) and the time it may take to
arrive (408), so that a client that sends headers and then stalls frees its place at once.

The time limit is kept by :class:`Deadlines`, one watcher task per event loop that wakes a few times per limit and
cancels the reads past their deadline, rather than by a timer per request: ``asyncio.timeout`` around each read cost
about 30 us of CPU per one-record request in process, more than every other admission step together. A
stalled body is therefore answered between ``timeout_s`` and ``timeout_s`` plus a quarter of it (at most 1 s more).
"""

from __future__ import annotations

import asyncio
import time

from ferry.online.auth import Message, Receive, Refusal
from ferry.online.settings import OnlineSettings

__all__ = ["BodyLimit", "Deadlines"]

IDLE_TICKS = 20
"""A watcher stops after this many wake-ups without a read to watch (a new read starts another)."""


class Deadlines:
    """Cancels the tasks whose read is past its deadline; a task that was cancelled here learns it from
    :meth:`expired` (any other cancellation is not this one's to handle)."""

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._started = 0

    def watch(self, task: asyncio.Task[object], timeout_s: float) -> None:
        """``task`` must finish its read within ``timeout_s`` (call :meth:`done` when it has)."""
        self._due[task] = time.monotonic() + timeout_s
        self._started += 1
        watcher = self._watcher
        if watcher is None or watcher.done() or watcher.get_loop() is not task.get_loop():
            tick_s = min(1.0, max(0.02, timeout_s / 4))
            self._watcher = task.get_loop().create_task(self._watch(tick_s), name="ferry-body-deadlines")

    def done(self, task: asyncio.Task[object]) -> None:
        self._due.pop(task, None)
        self._expired.discard(task)

    def expired(self, task: asyncio.Task[object]) -> bool:
        return task in self._expired

    async def _watch(self, tick_s: float) -> None:
        idle = 0
        seen = self._started
        while idle < IDLE_TICKS:
            await asyncio.sleep(tick_s)
            idle = idle + 1 if not self._due and seen == self._started else 0
            seen = self._started
            now = time.monotonic()
            loop = asyncio.get_running_loop()
            for task, due in list(self._due.items()):
                if due <= now and task not in self._expired and task.get_loop() is loop:
                    self._expired.add(task)
                    task.cancel()


class BodyLimit:
    """Reads a body whole: 413 when ``Content-Length`` or the streamed body exceeds ``max_bytes``, 408 when it has
    not arrived in full within ``timeout_s``, 400 for a ``Content-Length`` that is not a number (None: read
    settings)."""

    def __init__(self, max_bytes: int | None = None, timeout_s: float | None = None) -> None:
        self._max = max_bytes
        self._timeout = timeout_s
        self.timed_out = 0
        self.deadlines = Deadlines()

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

    def _too_large(self) -> Refusal:
        reason = f"the body exceeds {self.max_bytes} bytes; send fewer records per request"
        return Refusal(413, {"error": reason, "field": None, "rule": "max_body_bytes"}, "max_body_bytes")

    async def read(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> Message | Refusal:
        """The whole body as one ``http.request`` message, the message that came instead of the body (a
        disconnect), or the :class:`Refusal` to answer."""
        limit = self.max_bytes
        for name, value in headers:
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return Refusal(400, {"error": "Content-Length is not a number"}, "content_length")
                if declared > limit:
                    return self._too_large()
        chunks: list[bytes] = []
        size = 0
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a body is read inside a task")
        self.deadlines.watch(task, self.timeout_s)
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                if size > limit:
                    return self._too_large()
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not self.deadlines.expired(task):
                raise
            task.uncancel()
            self.timed_out += 1
            reason = f"the body did not arrive in full within {self.timeout_s:g} s; send it at once"
            return Refusal(
                408,
                {"error": reason, "field": None, "rule": "body_timeout_s"},
                "body_timeout_s",
                ((b"connection", b"close"),),
            )
        finally:
            self.deadlines.done(task)
        return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
