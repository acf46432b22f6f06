"""One predict request's answer per task, computed from a :class:`~ferry.online.holder.LoadedModel`.

| task | an answer (one per record) | a feedback label |
|---|---|---|
| binary, multiclass | :class:`Prediction`: ``prediction``, ``probabilities`` (every class) | one of the classes |
| regression | :class:`ValuePrediction`: ``value``, ``lower``, ``upper``, ``coverage`` | a finite number in range |

"In range" is inside the schema's target_min/target_max when it declares them.

The numbers are the float32 outputs of ``model.onnx`` as exact JSON numbers, so batch and edge give the same bits.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ferry.online.holder import LoadedModel
from ferry.online.ids import PredictionIds
from ferry.online.records import RequestRejected, prepare
from ferry.schema import Schema
from ferry.scoring import ValueScores

__all__ = [
    "FeedbackAck",
    "FeedbackItem",
    "ModelInfo",
    "PredictResponse",
    "Prediction",
    "ValuePrediction",
    "answer_columns",
    "check_feedback",
    "feedback_label",
    "model_info",
    "predict",
    "predict_inputs",
]


class Prediction(BaseModel):
    """A classifier's answer (binary or multiclass)."""

    prediction_id: str = Field(description="Unique id of this prediction; send it back with feedback.")
    prediction: int | str = Field(description="The predicted class, one of the schema's target_classes.")
    probabilities: dict[str, float] = Field(
        description="Probability of every class, keyed by the class label, in target_classes order."
    )


class ValuePrediction(BaseModel):
    """A regressor's answer: the value and its split-conformal interval."""

    prediction_id: str = Field(description="Unique id of this prediction; send it back with feedback.")
    value: float = Field(description="The predicted value.")
    lower: float = Field(description="Lower bound of the prediction interval.")
    upper: float = Field(description="Upper bound of the prediction interval.")
    coverage: float | None = Field(
        description="The share of true values the interval covers (split-conformal, measured on the holdout)."
    )


class PredictResponse(BaseModel):
    model: str = Field(description="The model's name.")
    version: str = Field(description="The version that answered.")
    predictions: list[Prediction | ValuePrediction] = Field(
        description="One entry per record, in request order: a class and its probabilities from a classifier, a "
        "value and its interval from a regressor."
    )


class FeedbackItem(BaseModel):
    prediction_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The id a predict response gave.")
    # bool first, so that a JSON true stays a boolean (and is refused) instead of becoming the number 1
    label: bool | int | float | str = Field(
        description="The truth: for a classifier one of the schema's target_classes; for a regressor a finite "
        "number inside the schema's target_min/target_max. A boolean is refused."
    )


class FeedbackAck(BaseModel):
    stored: int = Field(description="How many labels were stored.")


class ModelInfo(BaseModel):
    model: str
    version: str
    channel: str
    created_at: str
    loaded_at: str
    input_schema: dict[str, Any] = Field(description="The schema the version was trained on.")
    gate: dict[str, Any]
    metrics: dict[str, Any]


def predict(
    loaded: LoadedModel, records: Sequence[Mapping[str, Any]], *, ids: PredictionIds | None = None
) -> PredictResponse:
    """Score ``records`` with ``loaded``; RequestRejected (422) names the first bad field.

    ``ids`` signs the prediction ids (:mod:`ferry.online.ids`); without it they are plain random ids, which
    ``/feedback`` refuses.
    """
    return predict_inputs(loaded, prepare(records, loaded.served), ids=ids)


def predict_inputs(
    loaded: LoadedModel, inputs: dict[str, np.ndarray], *, ids: PredictionIds | None = None
) -> PredictResponse:
    """The same answer from inputs already checked by :func:`~ferry.online.records.prepare`.

    The models are built without validation (``model_construct``): every field comes from the version's own outputs
    and classes with the declared types, and validating them again was a tenth of a one-record request's CPU.
    """
    new_id = ids.new if ids is not None else _random_id
    found = loaded.scorer.answer(inputs)
    out: list[Prediction | ValuePrediction] = []
    if isinstance(found, ValueScores):
        coverage = None if math.isnan(found.coverage) else found.coverage
        for value, lower, upper in zip(found.values.tolist(), found.lower.tolist(), found.upper.tolist(), strict=True):
            out.append(
                ValuePrediction.model_construct(
                    prediction_id=new_id(), value=value, lower=lower, upper=upper, coverage=coverage
                )
            )
    else:
        classes = loaded.schema.target_classes
        keys = loaded.served.class_keys
        for label, probs in zip(found.labels.tolist(), found.probabilities.tolist(), strict=True):
            out.append(
                Prediction.model_construct(
                    prediction_id=new_id(),
                    prediction=classes[int(label)],
                    probabilities=dict(zip(keys, probs, strict=True)),
                )
            )
    return PredictResponse.model_construct(model=loaded.version.model, version=loaded.id, predictions=out)


def answer_columns(answer: Prediction | ValuePrediction, *, binary: bool) -> dict[str, Any]:
    """The answer's columns in a prediction log row (see :mod:`ferry.online.logs`); ``binary`` adds ``p_positive``."""
    if isinstance(answer, ValuePrediction):
        return {"value": answer.value, "lower": answer.lower, "upper": answer.upper}
    row: dict[str, Any] = {"prediction": str(answer.prediction)}
    if binary:
        row["p_positive"] = list(answer.probabilities.values())[1]
    row.update({f"prob_{c}": p for c, p in answer.probabilities.items()})
    return row


def _random_id() -> str:
    return uuid.uuid4().hex


def model_info(loaded: LoadedModel, channel: str) -> ModelInfo:
    """What is being served: version, schema, the gate summary and holdout metrics."""
    info = loaded.version.info
    gate = info.get("gate")
    metrics = info.get("metrics")
    return ModelInfo(
        model=loaded.version.model,
        version=loaded.id,
        channel=channel,
        created_at=loaded.version.created_at,
        loaded_at=loaded.loaded_at,
        input_schema=loaded.schema.to_dict(),
        gate=dict(gate) if isinstance(gate, Mapping) else {},
        metrics=dict(metrics) if isinstance(metrics, Mapping) else {},
    )


def check_feedback(
    loaded: LoadedModel, items: Sequence[FeedbackItem], ids: PredictionIds
) -> list[tuple[str, str | float]]:
    """(prediction id, label) pairs, the label as text for a classifier and as a float for a regressor;
    RequestRejected (422) naming the first item whose id this service did not issue (rule ``prediction_id``) or
    whose label does not fit the task (see :func:`feedback_label`)."""
    out = []
    for i, item in enumerate(items):
        if not ids.valid(item.prediction_id):
            raise RequestRejected(
                422, f"[{i}].prediction_id", "prediction_id",
                "is not an id this service issued; send the prediction_id a /predict answer gave",
            )  # fmt: skip
        out.append((item.prediction_id, feedback_label(loaded.schema, item.label, f"[{i}].label")))
    return out


def feedback_label(schema: Schema, label: object, where: str) -> str | float:
    """A true label checked against the task: one of the classes (as text), or a finite number inside
    target_min/target_max (as a float); RequestRejected (422) naming ``where`` otherwise."""
    if schema.kind != "regression":
        classes = [str(c) for c in schema.target_classes]
        if isinstance(label, float) and label.is_integer():  # 1.0 names the class 1, as JSON numbers go
            label = int(label)
        text = str(label)
        if isinstance(label, bool) or not isinstance(label, int | str) or text not in classes:
            raise RequestRejected(
                422, where, "target_classes", f"{label!r} is not one of the classes {', '.join(classes)}"
            )
        return text
    if isinstance(label, bool) or not isinstance(label, int | float):
        raise RequestRejected(
            422, where, "target_numeric", f"expected a number for the regression target, got {type(label).__name__}"
        )
    try:
        value = float(label)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise RequestRejected(422, where, "target_finite", f"{label!r} is not a finite number")
    low = -math.inf if schema.target_min is None else schema.target_min
    high = math.inf if schema.target_max is None else schema.target_max
    if not low <= value <= high:
        raise RequestRejected(
            422, where, "target_range", f"{value!r} is outside the schema's target range [{low:g}, {high:g}]"
        )
    return value
