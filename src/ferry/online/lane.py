"""The fast lane: an ASGI middleware that answers ``POST /predict``, ``POST /explain`` and ``POST /telemetry`` itself.

BentoML's generic request path (per-request IO models, signature inspection, a threadpool hop, response wrapping)
took about 1.6 ms of CPU for a one-record request whose checks and scoring take about 0.2 ms (see the README's
"Online service" figures). The lane sits inside the service's middleware stack, after load shedding, the API key
check and the body limit, and answers ``POST /predict`` with :meth:`Answerer.answer`, the function the typed
BentoML API method calls too, so validation, routing, metrics, prediction logs and status codes are the same:

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
``inline_bytes`` are scored in a worker thread so that a big request never stalls the loop. Until a service
instance attaches an :class:`Answerer` to the :class:`Lane`, and for every other path or method, requests go on to
the wrapped app (BentoML) unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from ferry.online.answer import Answerer, NotReadyError, check_envelope
from ferry.online.auth import REFUSED, ASGIApp, ASGIScope, Receive, Send, send_json
from ferry.online.explain import CLASS_FIELD
from ferry.online.records import RequestRejected, parse_json
from ferry.online.telemetry import Collector

__all__ = ["Lane", "PredictLaneMiddleware"]

log = logging.getLogger("ferry.online.lane")

_JSON_HEADERS = [(b"content-type", b"application/json")]
PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"


class Lane:
    """Where the service instance attaches its :class:`Answerer` and :class:`Collector` (None: BentoML answers)."""

    def __init__(
        self,
        path: str = "/predict",
        telemetry_path: str = "/telemetry",
        explain_path: str = "/explain",
        *,
        inline_bytes: int = 64 * 1024,
        retry_after_s: int = 1,
    ) -> None:
        self.path = path
        self.telemetry_path = telemetry_path
        self.explain_path = explain_path
        self.inline_bytes = inline_bytes
        self.retry_after_s = retry_after_s
        self.answerer: Answerer | None = None
        self.collector: Collector | None = None
        self.metrics: Callable[[], str] | None = None  # the Prometheus text of GET /metrics


class PredictLaneMiddleware:
    """ASGI middleware answering ``POST <lane.path>`` through ``lane.answerer``."""

    def __init__(self, app: ASGIApp, lane: Lane) -> None:
        self.app = app
        self.lane = lane

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") in ("GET", "HEAD")
            and scope.get("path") == "/metrics"
            and self.lane.metrics is not None
        ):
            data = (await asyncio.to_thread(self.lane.metrics)).encode()
            headers = [(b"content-type", PROMETHEUS_TEXT), (b"content-length", str(len(data)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": data if scope.get("method") == "GET" else b""})
            return
        handler: Callable[[bytes], bytes] | None = None
        inline = True
        if scope["type"] == "http" and scope.get("method") == "POST":
            path = scope.get("path")
            answerer, collector = self.lane.answerer, self.lane.collector
            if path == self.lane.path and answerer is not None:
                handler = partial(_answer, answerer)
            elif path == self.lane.explain_path and answerer is not None:
                handler, inline = partial(_explain, answerer), False
            elif path == self.lane.telemetry_path and collector is not None:
                handler = partial(_collect, collector)
        if handler is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            if inline and len(body) <= self.lane.inline_bytes:
                data = handler(body)
            else:
                data = await asyncio.to_thread(handler, body)
        except RequestRejected as exc:
            scope[REFUSED] = exc.rule
            await send_json(send, exc.status, {"error": str(exc), **exc.to_dict()})
            return
        except NotReadyError as exc:
            retry = [(b"retry-after", str(self.lane.retry_after_s).encode())]
            await send_json(send, 503, {"error": str(exc)}, retry)
            return
        except Exception:
            log.exception("%s failed on a request that passed validation", scope.get("path"))
            await send_json(send, 500, {"error": "an unexpected error has occurred; see the server log"})
            return
        headers = [*_JSON_HEADERS, (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})


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


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
