"""One predict or explain request, end to end: route, check, score (and explain), count, log, shadow. Shared by
every way in.

The BentoML API methods (``Online.predict``, ``Online.explain``) and the HTTP fast lane (:mod:`ferry.online.lane`)
both call :meth:`Answerer.answer` and :meth:`Answerer.explain`, so they cannot disagree on validation, routing,
metrics or prediction logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ferry.errors import FerryError
from ferry.online.explain import ExplainResponse, check_row_count, explain
from ferry.online.holder import LoadedModel, ModelHolder
from ferry.online.ids import PredictionIds
from ferry.online.logs import PredictionLog
from ferry.online.metrics import OnlineMetrics
from ferry.online.predict import Prediction, PredictResponse, ValuePrediction, predict
from ferry.online.records import RequestRejected, to_records
from ferry.online.routing import Router

__all__ = ["Answerer", "NotReadyError", "agrees", "check_envelope"]

log = logging.getLogger("ferry.online")


class NotReadyError(FerryError, RuntimeError):
    """No model is loaded and warmed yet: the request gets 503 and should be retried once /readyz answers 200."""


def agrees(answer: Prediction | ValuePrediction, shadow: Prediction | ValuePrediction) -> bool:
    """Whether a shadow's answer agrees with the answer given: the same class for classifiers; for regressors, the
    shadow's value inside the answer's prediction interval (so agreement reads alike for every scale of target)."""
    if isinstance(answer, ValuePrediction) and isinstance(shadow, ValuePrediction):
        return answer.lower <= shadow.value <= answer.upper
    if isinstance(answer, Prediction) and isinstance(shadow, Prediction):
        return answer.prediction == shadow.prediction
    return False


def check_envelope(payload: Any) -> tuple[Any, str | None]:
    """A predict body ``{"records": <record or list of records>, "route_key": <str or null>}`` -> its two parts.

    Shape errors get 400 naming the field, as the typed BentoML API answers them; the records themselves are
    judged afterwards by :func:`~ferry.online.records.to_records` and the schema (422 naming the field).
    """
    if not isinstance(payload, Mapping):
        raise RequestRejected(400, None, "body", f"expected a JSON object, got {type(payload).__name__}")
    if "records" not in payload:
        raise RequestRejected(400, "records", "required", "is missing; send a record or a list of records")
    records = payload["records"]
    if not isinstance(records, Mapping) and not (
        isinstance(records, list) and all(isinstance(r, Mapping) for r in records)
    ):
        raise RequestRejected(400, "records", "type", "expected a record (object) or a list of records (objects)")
    route_key = payload.get("route_key")
    if route_key is not None and not isinstance(route_key, str):
        raise RequestRejected(400, "route_key", "type", f"expected a string or null, got {type(route_key).__name__}")
    return records, route_key


class Answerer:
    """Answers predict requests from ``holder`` (and ``challenger`` as ``router`` decides); thread-safe."""

    def __init__(
        self,
        holder: ModelHolder,
        *,
        router: Router,
        metrics: OnlineMetrics,
        prediction_log: PredictionLog,
        max_records: int,
        challenger: ModelHolder | None = None,
        ids: PredictionIds | None = None,
        max_explain_rows: int = 100,
        explain_top_k: int = 5,
    ) -> None:
        self.holder = holder
        self.challenger = challenger
        self.router = router
        self.metrics = metrics
        self.prediction_log = prediction_log
        self.max_records = max_records
        self.ids = ids
        self.max_explain_rows = max_explain_rows
        self.explain_top_k = explain_top_k

    def loaded(self) -> LoadedModel:
        loaded = self.holder.current
        if loaded is None:
            raise NotReadyError("no model is loaded yet; wait until /readyz answers 200")
        return loaded

    def answer(self, records: Any, route_key: str | None = None) -> PredictResponse:
        """Score one record or a list of records; RequestRejected names the field, NotReadyError before warm-up."""
        challenger = self.challenger.current if self.challenger is not None else None
        route = self.router.route(self.loaded(), challenger, route_key)
        loaded = route.answer
        try:
            rows, _ = to_records(records, max_records=self.max_records)
            started = time.perf_counter()  # the version's own time (schema checks and scoring), as for the shadow
            response = predict(loaded, rows, ids=self.ids)
        except RequestRejected:
            self.metrics.request(loaded.id, "rejected")
            raise
        took_ms = (time.perf_counter() - started) * 1000
        self.metrics.request(loaded.id, "ok")
        self._count(loaded, response)
        self.prediction_log.record(loaded, rows, response, latency_ms=took_ms)
        if route.shadow is not None:
            self._shadow(route.shadow, rows, response)
        return response

    def explain(
        self, records: Any, route_key: str | None = None, *, target_class: Any = None, top_k: Any = None
    ) -> ExplainResponse:
        """Predict and explain one record or a list of them with the version that answers this request (a shadow
        challenger neither answers nor explains). RequestRejected: 413 over ``max_explain_rows``, 409 for a version
        without ``explain.npz``, 422 naming the field; NotReadyError before warm-up.

        The predictions are logged as /predict logs them, with no latency: the time is the explanation's, and it
        must not weigh on the latency a rollout compares. The explanations are not logged (the version and the
        logged inputs give them again).
        """
        challenger = self.challenger.current if self.challenger is not None else None
        loaded = self.router.route(self.loaded(), challenger, route_key).answer
        try:
            check_row_count(records, self.max_explain_rows)
            rows, _ = to_records(records, max_records=self.max_records)
            response = explain(
                loaded, rows, target_class=target_class, top_k=top_k, default_top_k=self.explain_top_k, ids=self.ids
            )
        except RequestRejected:
            self.metrics.request(loaded.id, "rejected")
            raise
        self.metrics.request(loaded.id, "ok")
        self.prediction_log.record(loaded, rows, response)
        return response

    def _count(self, loaded: LoadedModel, response: PredictResponse) -> None:
        """The prediction distribution per task (:mod:`ferry.online.metrics`)."""
        answers = response.predictions
        kind = loaded.schema.kind
        if kind == "regression":
            values = [p.value for p in answers if isinstance(p, ValuePrediction)]
            self.metrics.values(loaded.id, values, loaded.value_buckets)
        elif kind == "multiclass":
            self.metrics.predicted(loaded.id, [str(p.prediction) for p in answers if isinstance(p, Prediction)])
        else:
            positive = loaded.served.class_keys[1]
            self.metrics.scores(loaded.id, [p.probabilities[positive] for p in answers if isinstance(p, Prediction)])

    def _shadow(self, challenger: LoadedModel, rows: list[Any], answer: PredictResponse) -> None:
        """Score the same rows with the challenger; count agreement and log it; the answer is never changed."""
        started = time.perf_counter()
        try:
            shadow = predict(challenger, rows, ids=self.ids)
        except Exception as exc:
            self.metrics.request(challenger.id, "shadow_failed")
            log.warning("shadow version %s could not score a request: %s", challenger.id, exc)
            return
        agree = sum(agrees(a, b) for a, b in zip(answer.predictions, shadow.predictions, strict=True))
        self.metrics.request(challenger.id, "shadow")
        self.metrics.shadow(agree, len(rows))
        took_ms = (time.perf_counter() - started) * 1000
        self.prediction_log.record(challenger, rows, shadow, role="shadow", latency_ms=took_ms)
