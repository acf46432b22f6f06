"""One explain request's answer: per record, the prediction ``/predict`` gives and the explanation of
:func:`ferry.explain.records`, computed with the explainer the served version was loaded with.

A body is a predict body (``{"records": ..., "route_key": ...}``) with two more fields, both optional:

- ``target_class``: the class whose probability is explained (one of the schema's ``target_classes``); default:
  the class predicted for each record. A regressor explains its value and takes none (422).
- ``top_k``: how many features the ``top`` list names, a whole number from 1 to the feature count (422 naming
  ``top_k`` otherwise); default ``FERRY_EXPLAIN_TOP_K``, at most the feature count.

The answer is :class:`ExplainResponse`: the :class:`~ferry.online.predict.PredictResponse` of the same records
(``predictions``, with prediction ids that ``/feedback`` accepts) and ``explanations``, one per record in the same
order. The numbers are the float64 the explainer computed, sent as exact JSON numbers, so batch and edge explain a
row with the same bits. A version without ``explain.npz`` gets 409 naming it (see
:mod:`ferry.online.holder`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ferry.errors import DataValidationError
from ferry.explain import records as explanation_records
from ferry.online.holder import LoadedModel
from ferry.online.ids import PredictionIds
from ferry.online.predict import PredictResponse, predict_inputs
from ferry.online.records import RequestRejected, prepare

__all__ = [
    "CLASS_FIELD",
    "ExplainResponse",
    "ExplainedFeature",
    "ExplanationRecord",
    "check_row_count",
    "explain",
]

CLASS_FIELD = "target_class"
"""The body's field naming the class to explain (``class`` is the answer's key, not a request field)."""


class ExplainedFeature(BaseModel):
    feature: str = Field(description="A feature, named as in the schema.")
    attribution: float = Field(description="Its attribution.")


class ExplanationRecord(BaseModel):
    """One record's explanation, as :func:`ferry.explain.records` makes it (the contract every surface follows)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    explained_class: int | str | None = Field(
        alias="class", description="The class explained: the one asked, else the one predicted; null for a regressor."
    )
    value: float = Field(description="The prediction explained: that class's probability, or the regressor's value.")
    base_value: float = Field(description="The mean of the same over the version's background sample.")
    attributions: dict[str, float] = Field(
        description="Per feature, in schema order; they sum to value - base_value (up to float rounding)."
    )
    standard_errors: dict[str, float] | None = Field(
        description="Per feature, the standard error of a sampled estimate; null when the values are exact."
    )
    top: list[ExplainedFeature] = Field(description="The top_k features by absolute attribution, largest first.")
    exact: bool = Field(description="True when the attributions are exact Shapley values over the background.")


class ExplainResponse(PredictResponse):
    explanations: list[ExplanationRecord] = Field(
        description="One per record, in request order, explaining the prediction at the same position."
    )


def check_row_count(records: Any, max_rows: int) -> None:
    """413 naming the limit when a list holds more than ``max_rows`` records (checked before any record is read)."""
    if isinstance(records, list) and len(records) > max_rows:
        raise RequestRejected(
            413, None, "max_rows",
            f"{len(records)} records exceed the limit of {max_rows} per /explain call (FERRY_EXPLAIN_MAX_ROWS); "
            "split the request",
        )  # fmt: skip


def explain(
    loaded: LoadedModel,
    records: Sequence[Mapping[str, Any]],
    *,
    target_class: Any = None,
    top_k: Any = None,
    default_top_k: int = 5,
    ids: PredictionIds | None = None,
) -> ExplainResponse:
    """Predict and explain ``records`` with ``loaded``: 409 when the version has no explainer, 422 naming the field
    (a record's, ``target_class`` or ``top_k``) when the request does not fit the version."""
    explainer = loaded.explainer
    if explainer is None:
        raise RequestRejected(409, None, "explain_file", loaded.unexplained)
    if target_class is not None and (isinstance(target_class, bool) or not isinstance(target_class, int | str)):
        raise RequestRejected(
            422, CLASS_FIELD, "type", f"expected one of the model's classes (a text or a number), got {target_class!r}"
        )
    k = min(default_top_k, len(explainer.features)) if top_k is None else top_k
    inputs = prepare(records, loaded.served)
    try:
        found = explainer.explain(inputs, target=target_class, top_k=k)
    except DataValidationError as exc:
        raise RequestRejected(422, CLASS_FIELD if exc.column == "class" else exc.column, exc.rule, exc.detail) from None
    answer = predict_inputs(loaded, inputs, ids=ids)
    return ExplainResponse(
        model=answer.model,
        version=answer.version,
        predictions=answer.predictions,
        explanations=[ExplanationRecord.model_validate(r) for r in explanation_records(found)],
    )
