"""One predict request's answer, computed from a :class:`~ferry.online.holder.LoadedModel`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from ferry.online.holder import LoadedModel
from ferry.online.ids import PredictionIds
from ferry.online.records import RequestRejected, prepare

__all__ = [
    "FeedbackAck",
    "FeedbackItem",
    "ModelInfo",
    "PredictResponse",
    "Prediction",
    "check_feedback",
    "model_info",
    "predict",
]


class Prediction(BaseModel):
    prediction_id: str = Field(description="Unique id of this prediction; send it back with feedback.")
    prediction: int | str = Field(description="The predicted class, one of the schema's target_classes.")
    probabilities: dict[str, float] = Field(description="Probability of each class, keyed by the class label.")


class PredictResponse(BaseModel):
    model: str = Field(description="The model's name.")
    version: str = Field(description="The version that answered.")
    predictions: list[Prediction] = Field(description="One entry per record, in request order.")


class FeedbackItem(BaseModel):
    prediction_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The id a predict response gave.")
    label: int | str = Field(description="The true class, one of the schema's target_classes.")


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
    new_id = ids.new if ids is not None else _random_id
    scores = loaded.scorer.score(prepare(records, loaded.served))
    classes = loaded.schema.target_classes
    keys = [str(c) for c in classes]
    out = []
    for label, probs in zip(scores.labels.tolist(), scores.probabilities.tolist(), strict=True):
        out.append(
            Prediction(
                prediction_id=new_id(),
                prediction=classes[int(label)],
                probabilities={keys[0]: probs[0], keys[1]: probs[1]},
            )
        )
    return PredictResponse(model=loaded.version.model, version=loaded.id, predictions=out)


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


def check_feedback(loaded: LoadedModel, items: Sequence[FeedbackItem], ids: PredictionIds) -> list[tuple[str, str]]:
    """(prediction id, label) pairs; RequestRejected (422) naming the first item whose id this service did not
    issue (rule ``prediction_id``) or whose label is not a target class."""
    classes = [str(c) for c in loaded.schema.target_classes]
    out = []
    for i, item in enumerate(items):
        if not ids.valid(item.prediction_id):
            raise RequestRejected(
                422, f"[{i}].prediction_id", "prediction_id",
                "is not an id this service issued; send the prediction_id a /predict answer gave",
            )  # fmt: skip
        label = str(item.label)
        if isinstance(item.label, bool) or label not in classes:
            raise RequestRejected(
                422, f"[{i}].label", "target_classes", f"{item.label!r} is not one of the classes {', '.join(classes)}"
            )
        out.append((item.prediction_id, label))
    return out
