"""Score rows with ``model.onnx`` through onnxruntime: the one scoring path shared by batch, online and edge.

**The output contract.** Every ferry ``model.onnx`` takes one ``(n, 1)`` input per feature (float32 numerics,
strings for categories) and answers by task; :class:`OnnxScorer` reads the task, the classes and the interval from
the model's own metadata (``ferry.schema``, ``ferry.interval``), so the same bytes give the same answer anywhere:

- **binary** and **multiclass**: ONNX outputs ``label`` int64 (n,) and ``probabilities`` float32 (n, k), k = 2 for
  binary. :meth:`OnnxScorer.answer` gives :class:`Scores`; :meth:`OnnxScorer.rows` gives per row
  ``{"label": <class>, "probabilities": {"<class>": p, ...}}``.
- **regression**: ONNX outputs ``value``, ``lower`` and ``upper``, float32 (n, 1). :meth:`OnnxScorer.answer` gives
  :class:`ValueScores`; :meth:`OnnxScorer.rows` gives per row
  ``{"value": v, "lower": lo, "upper": hi, "coverage": c}``.

``label`` is an index into the schema's ``target_classes`` (binary: 1 = the positive class), and the probability
columns follow that order; ``<class>`` is the declared label itself. ``lower``/``upper`` are ``value`` ∓ the
split-conformal half width stored in the model, so every surface returns identical bounds at the declared
``coverage``. :meth:`OnnxScorer.score` is the classifiers' answer alone, for the surfaces that speak only classes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

__all__ = ["PROVIDERS", "OnnxScorer", "Scores", "ValueScores"]

PROVIDERS = ["CPUExecutionProvider"]
CLASS_OUTPUTS = ["label", "probabilities"]
VALUE_OUTPUTS = ["value", "lower", "upper"]
TaskName = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class Scores:
    """A classifier's answer (binary or multiclass)."""

    labels: np.ndarray  # (n,) int64 class index into ``classes`` (binary: 1 = positive class)
    probabilities: np.ndarray  # (n, k) float32, one column per class in ``classes`` order
    classes: tuple[int | str, ...] = ()  # the schema's target_classes


@dataclass(frozen=True)
class ValueScores:
    """A regressor's answer: the value and its split-conformal interval at ``coverage``."""

    values: np.ndarray  # (n,) float32
    lower: np.ndarray  # (n,) float32, values - half width
    upper: np.ndarray  # (n,) float32, values + half width
    coverage: float


class OnnxScorer:
    """An onnxruntime session over a ferry ``model.onnx``, knowing its task (see the module's output contract)."""

    def __init__(self, model: bytes, *, intra_op_threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model, sess_options=options, providers=PROVIDERS)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        schema = json.loads(meta["ferry.schema"]) if "ferry.schema" in meta else {}
        self.task: TaskName
        if self.output_names == VALUE_OUTPUTS:
            self.task = "regression"
        elif self.output_names == CLASS_OUTPUTS:
            declared = schema.get("task")
            width = self.session.get_outputs()[1].shape[-1]
            self.task = declared if declared in ("binary", "multiclass") else ("binary" if width == 2 else "multiclass")
        else:
            raise ValueError(
                f"not a ferry model: outputs {self.output_names}, expected {CLASS_OUTPUTS} or {VALUE_OUTPUTS}"
            )
        self.classes: tuple[int | str, ...] = tuple(schema.get("target_classes") or ())
        interval = json.loads(meta["ferry.interval"]) if "ferry.interval" in meta else {}
        self.coverage: float | None = float(interval["coverage"]) if "coverage" in interval else None

    def _run(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ValueError(f"inputs lack the model's input(s) {missing}")
        out: list[Any] = self.session.run(self.output_names, {n: inputs[n] for n in self.input_names})
        return out

    def answer(self, inputs: dict[str, np.ndarray]) -> Scores | ValueScores:
        """The task's answer: :class:`Scores` for a classifier, :class:`ValueScores` for a regressor."""
        if self.task == "regression":
            value, lower, upper = (np.asarray(a).reshape(-1) for a in self._run(inputs))
            return ValueScores(value, lower, upper, self.coverage if self.coverage is not None else math.nan)
        label, prob = self._run(inputs)
        return Scores(labels=np.asarray(label), probabilities=np.asarray(prob), classes=self.classes)

    def score(self, inputs: dict[str, np.ndarray]) -> Scores:
        """A classifier's answer; a regressor is refused (the surface asking speaks only classes)."""
        found = self.answer(inputs)
        if not isinstance(found, Scores):
            raise ValueError("this is a regression model: it answers a value and an interval, not class scores")
        return found

    def rows(self, inputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """One JSON-ready answer per row, as the output contract above spells it."""
        found = self.answer(inputs)
        if isinstance(found, ValueScores):
            return [
                {"value": float(v), "lower": float(lo), "upper": float(hi), "coverage": found.coverage}
                for v, lo, hi in zip(found.values, found.lower, found.upper, strict=True)
            ]
        classes = found.classes or tuple(range(found.probabilities.shape[1]))
        return [
            {"label": classes[int(i)], "probabilities": {str(c): float(p) for c, p in zip(classes, row, strict=True)}}
            for i, row in zip(found.labels, found.probabilities, strict=True)
        ]

    def primary(self, inputs: dict[str, np.ndarray], *, class_index: int | None = None) -> np.ndarray:
        """One float64 score per row: the value (regression), or the probability of ``class_index`` (default: the
        last class, which for a binary model is the positive one)."""
        found = self.answer(inputs)
        if isinstance(found, ValueScores):
            return found.values.astype(np.float64)
        column = found.probabilities.shape[1] - 1 if class_index is None else class_index
        return found.probabilities[:, column].astype(np.float64)
