"""The ferry online service: a BentoML adapter over ``ferry.online`` (run ``bentoml serve`` in this directory).

Each worker builds one :class:`~ferry.online.app.OnlineApp` (the composition root, BentoML-free) and adapts it to
BentoML: the API methods, the front door (one ASGI middleware), readiness and shutdown. It serves the version that
``FERRY_ONLINE_CHANNEL`` (default ``online/champion``) of ``FERRY_ONLINE_MODEL`` points to in the registry at
``FERRY_REGISTRY_URL``, polls the pointer and swaps to a new version once it is warmed.
"""

from __future__ import annotations

import gc
import logging
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, Field

from ferry.online.answer import NotReadyError
from ferry.online.app import OnlineApp
from ferry.online.explain import ExplainResponse
from ferry.online.front import Attached, FrontDoor
from ferry.online.predict import FeedbackAck, FeedbackItem, ModelInfo, PredictResponse
from ferry.online.records import RequestRejected
from ferry.online.settings import OnlineSettings
from ferry.online.telemetry import TelemetryAck

log = logging.getLogger("ferry.online")

# uvicorn formats every response's access-log arguments (the client address, the quoted path) whenever its access
# logger has a handler anywhere up the tree, which BentoML's root handler is, and then drops the record below the
# root's WARNING level: about 20 us of CPU per request for nothing. The service's access log is off (``logging``
# below), so the records go nowhere either way; this is what uvicorn itself does for ``access_log=False``.
logging.getLogger("uvicorn.access").propagate = False


class Rejected(BentoMLException):
    """A request ferry refuses; BentoML answers with this status and the message naming the field."""

    def __init__(self, exc: RequestRejected) -> None:
        super().__init__(str(exc), error_code=HTTPStatus(exc.status))


class NotReady(BentoMLException):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE


class BentoArgs(BaseModel):
    """Arguments fixed when the bento is built (``bentoml build --arg version=<id>``, see ``build.py``)."""

    model: str | None = Field(default=None, max_length=64, description="The model to serve.")
    version: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{4,16}$", description="Serve exactly this version; ignore the channel."
    )


ARGS = bentoml.use_arguments(BentoArgs)
"""Empty under ``bentoml serve service:Online``; in a bento built by ``build.py``, the version it is pinned to."""


def request_timeout_s() -> float:
    """BentoML's request timeout from ``FERRY_ONLINE_REQUEST_TIMEOUT_S``; with settings that do not validate, the
    default (the service's first line then names the setting at fault)."""
    try:
        return OnlineSettings().request_timeout_s
    except ValueError:
        return float(OnlineSettings.model_fields["request_timeout_s"].default)


ATTACHED = Attached()
"""Where the service instance attaches its :class:`OnlineApp` for the front door (``ferry.online.front``): its
metrics, tarpit and the fast lane's answers."""


@bentoml.service(
    name="ferry-online",
    workers=1,
    # No BentoML concurrency limit: ferry sheds itself (FERRY_ONLINE_MAX_IN_FLIGHT, 32 by default, 503 +
    # Retry-After at once rather than a queue that ends in 504) and bounds the 401s held in the tarpit
    # (FERRY_ONLINE_TARPIT_MAX); BentoML's limit, set far above both, was one more layer on every request.
    # BentoML's timeout answers 504 when no answer has started in time; each request holds one of its timers until
    # the timeout has passed, answered or not, and a 30 s timeout cost about 0.07x of a one-record request's CPU
    # against 5 s (bench/README.md). FERRY_ONLINE_REQUEST_TIMEOUT_S, 10 s by default, longer than the body timeout.
    traffic={"timeout": request_timeout_s(), "max_concurrency": None},
    logging={"access": {"enabled": False}},
    # BentoML's request metrics label the raw path, so every unknown path a client tries adds series to /metrics
    # for good. ferry counts requests itself with bounded labels (ferry.online.front, ferry.online.metrics).
    metrics={"enabled": False, "namespace": "bentoml_service"},
    # OpenTelemetry's ASGI middleware opened a span per request and per ASGI message even with tracing off (no
    # exporter): a quarter of the worker's CPU on one-record predict requests. The hot path is left out of it;
    # remove this line when you configure a tracing exporter and want predict spans.
    tracing={"excluded_urls": ["/predict$"]},
)
class Online:
    """Predictions from the model a channel points to."""

    app: OnlineApp

    def __init__(self) -> None:
        self.app = OnlineApp(OnlineSettings(), model=ARGS.model, version=ARGS.version).start()
        ATTACHED.app = self.app
        # Everything loaded so far (BentoML, onnxruntime, pydantic models, the warmed session) lives as long as the
        # process: move it out of the collector's sight, so a full collection walks only what requests allocate.
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        if ATTACHED.app is self.app:
            ATTACHED.app = None
        self.app.stop(timeout_s=1.0)

    def __is_ready__(self) -> bool:
        return self.app.ready

    @bentoml.api
    def predict(self, records: list[dict[str, Any]] | dict[str, Any], route_key: str | None = None) -> PredictResponse:
        """Score one record or a list of records. ``route_key`` keeps a caller on one side of an A/B test.

        Over HTTP, ``POST /predict`` is answered by the fast lane (``ferry.online.lane``) with this same contract
        and the same :meth:`Answerer.answer`; this method serves in-process calls and documents the API.
        """
        try:
            return self.app.answerer.answer(records, route_key)
        except RequestRejected as exc:
            raise Rejected(exc) from None
        except NotReadyError as exc:
            raise NotReady(str(exc)) from None

    @bentoml.api(route="/explain")
    def explain(
        self,
        records: list[dict[str, Any]] | dict[str, Any],
        route_key: str | None = None,
        target_class: int | str | None = None,
        top_k: int | None = None,
    ) -> ExplainResponse:
        """Predict and explain one record or a list of records (explain scope): per record, the prediction
        ``/predict`` gives and the feature attributions that sum to the explained value minus the base value.

        ``target_class`` is the class whose probability is explained (default: the class predicted; a regressor takes
        none); ``top_k`` how many features the ``top`` list names (1 to the feature count; default
        ``FERRY_EXPLAIN_TOP_K``). The version that answers the request explains it. More records than
        ``FERRY_EXPLAIN_MAX_ROWS`` get 413; a version without ``explain.npz`` 409; a record, class or top_k that does
        not fit the version 422 naming the field. Over HTTP the fast lane answers it with the same Answerer.
        """
        try:
            return self.app.answerer.explain(records, route_key, target_class=target_class, top_k=top_k)
        except RequestRejected as exc:
            raise Rejected(exc) from None
        except NotReadyError as exc:
            raise NotReady(str(exc)) from None

    @bentoml.api(route="/feedback")
    def feedback(self, items: list[FeedbackItem]) -> FeedbackAck:
        """Ground-truth labels by prediction id (feedback scope), stored for the monitor flow."""
        try:
            return self.app.feedback(items)
        except RequestRejected as exc:
            raise Rejected(exc) from None
        except NotReadyError as exc:
            raise NotReady(str(exc)) from None

    @bentoml.api(route="/telemetry")
    def telemetry(self, heartbeat: dict[str, Any], /) -> TelemetryAck:
        """A heartbeat of an edge device (telemetry scope): the body is what ``ferry_edge`` Heartbeats.build makes.

        It is checked by ``ferry.online.telemetry`` rather than by BentoML so that a malformed one gets 422 naming
        the field (see ``Heartbeat`` there for the fields and their bounds); accepted ones are buffered into Parquet
        files in the registry for the monitor flow. Over HTTP the fast lane answers it with the same Collector.
        """
        try:
            return self.app.telemetry(heartbeat)
        except RequestRejected as exc:
            raise Rejected(exc) from None

    @bentoml.api(route="/model")
    def model(self) -> ModelInfo:
        """The version, schema, gate summary and metrics of the model being served."""
        try:
            return self.app.info()
        except NotReadyError as exc:
            raise NotReady(str(exc)) from None

    @bentoml.api(route="/refresh")
    def refresh(self) -> ModelInfo:
        """Read the channel pointer now (admin scope) and answer what is served afterwards."""
        self.app.holder.refresh()
        try:
            return self.app.info()
        except NotReadyError as exc:
            raise NotReady(str(exc)) from None


# The front door, the one middleware: every request is counted by endpoint and status. A request without a valid
# key is refused before its body is read (slowly, in the tarpit, once its client keeps failing); one key may have
# only its share of requests in the service (429); the body must arrive in full, within size and time (413, 408);
# only then does the request take one of the slots (503 + Retry-After over them), so a client that stalls holds
# none. POST /predict, /explain, /telemetry and GET /metrics are then answered by the fast lane, the rest here.
Online.add_asgi_middleware(FrontDoor, attached=ATTACHED)
