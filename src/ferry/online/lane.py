"""The fast lane: the requests the front door (:mod:`ferry.online.front`) answers itself, not BentoML's request path.

BentoML's generic request path (per-request IO models, signature inspection, a threadpool hop, response wrapping)
took about 1.6 ms of CPU for a one-record request whose checks and scoring take about 0.2 ms (see the README's
"Online service" figures). Once a request is admitted (key, share, body, slot), the lane answers ``POST /predict``
with :meth:`Answerer.answer`, the function the typed BentoML API method calls too, so validation, routing, metrics,
prediction logs and status codes are the same:

- 200 with :class:`~ferry.online.predict.PredictResponse` as JSON;
- 400 for malformed JSON or a body that is not ``{"records": ..., "route_key": ...}``, naming the field;
- 413 for too many records, 422 for a record that breaks the schema, naming the field;
- 503 with Retry-After while no model is loaded.

``POST /explain`` goes the same way with :meth:`Answerer.explain` (and the same error bodies, plus 409 for a
version without ``explain.npz``), always in a worker thread: one explained row costs thousands of model
evaluations, too long to hold the event loop.

``GET /metrics`` is answered here too, with the service's own metrics (:mod:`ferry.online.metrics`): BentoML's
request metrics are off, since they label every raw path a client tries.

``POST /telemetry`` goes through the lane for a different reason: BentoML parses the body of an API whose input is
the whole body (a positional-only parameter) with ``json.loads`` and answers malformed JSON with 500. The lane
answers 400, and the :class:`~ferry.online.telemetry.Collector` 422 naming the field of a malformed heartbeat.

Small bodies are handled on the event loop (a few hundred microseconds: cheaper than a thread hop); bodies over
``inline_bytes`` are scored in a worker thread so that a big request never stalls the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from ferry.online.answer import Answerer, NotReadyError, check_envelope
from ferry.online.auth import Send, send_json
from ferry.online.explain import CLASS_FIELD
from ferry.online.records import RequestRejected, parse_json
from ferry.online.telemetry import Collector

if TYPE_CHECKING:
    from ferry.online.app import OnlineApp

__all__ = ["Lane", "Taken"]

log = logging.getLogger("ferry.online.lane")

_JSON_HEADERS = [(b"content-type", b"application/json")]
PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Taken:
    """What the lane does with a request: ``handler`` turns the body into the answer's JSON, in a worker thread
    unless ``inline``; ``metrics`` answers ``GET``/``HEAD /metrics`` instead."""

    handler: Callable[[bytes], bytes] | None = None
    inline: bool = True
    metrics: Callable[[], str] | None = None


class Lane:
    """The paths the lane answers (any other request goes to BentoML)."""

    def __init__(
        self,
        path: str = "/predict",
        telemetry_path: str = "/telemetry",
        explain_path: str = "/explain",
        *,
        inline_bytes: int = 64 * 1024,
    ) -> None:
        self.path = path
        self.telemetry_path = telemetry_path
        self.explain_path = explain_path
        self.inline_bytes = inline_bytes
        self._app: OnlineApp | None = None
        self._table: dict[tuple[str, str], Taken] = {}

    def take(self, app: OnlineApp, method: str, path: str) -> Taken | None:
        """How the lane answers ``method path`` for ``app``, or None when BentoML does."""
        if app is not self._app:
            metrics = Taken(metrics=app.render_metrics)
            self._table = {
                ("POST", self.path): Taken(partial(_answer, app.answerer)),
                ("POST", self.explain_path): Taken(partial(_explain, app.answerer), inline=False),
                ("POST", self.telemetry_path): Taken(partial(_collect, app.collector)),
                ("GET", "/metrics"): metrics,
                ("HEAD", "/metrics"): metrics,
            }
            self._app = app
        return self._table.get((method, path))

    async def answer(
        self, taken: Taken, method: str, path: str, body: bytes, send: Send, retry_after_s: int
    ) -> tuple[int, str | None]:
        """Answer one request; the status sent and, for a refusal, the rule it broke."""
        if taken.metrics is not None:
            data = (await asyncio.to_thread(taken.metrics)).encode()
            headers = [(b"content-type", PROMETHEUS_TEXT), (b"content-length", str(len(data)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": data if method == "GET" else b""})
            return 200, None
        assert taken.handler is not None
        try:
            if taken.inline and len(body) <= self.inline_bytes:
                data = taken.handler(body)
            else:
                data = await asyncio.to_thread(taken.handler, body)
        except RequestRejected as exc:
            await send_json(send, exc.status, {"error": str(exc), **exc.to_dict()})
            return exc.status, exc.rule
        except NotReadyError as exc:
            await send_json(send, 503, {"error": str(exc)}, [(b"retry-after", str(retry_after_s).encode())])
            return 503, "not_ready"
        except Exception:
            log.exception("%s failed on a request that passed validation", path)
            await send_json(send, 500, {"error": "an unexpected error has occurred; see the server log"})
            return 500, "error"
        headers = [*_JSON_HEADERS, (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        return 200, None


def _answer(answerer: Answerer, body: bytes) -> bytes:
    records, route_key = check_envelope(parse_json(body))
    return answerer.answer(records, route_key).model_dump_json().encode()


def _explain(answerer: Answerer, body: bytes) -> bytes:
    payload = parse_json(body)
    records, route_key = check_envelope(payload)
    found = answerer.explain(records, route_key, target_class=payload.get(CLASS_FIELD), top_k=payload.get("top_k"))
    return found.model_dump_json().encode()


def _collect(collector: Collector, body: bytes) -> bytes:
    return collector.accept(parse_json(body)).model_dump_json().encode()
