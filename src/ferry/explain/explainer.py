""":class:`Explainer`: a version's ``model.onnx``, its background sample and its coalition plan, explaining rows.

A registered version's background and plan come from its ``explain.npz`` (:mod:`ferry.explain.store`): rows of
its reference sample drawn with a seed, features only, so no id, timestamp, target or PII column. The rows to
explain arrive as the checked input dict every surface already builds (``ferry.online.records.prepare`` online,
``ferry.data.to_onnx_inputs`` in batch); the explainer checks only that it is that dict.
The arithmetic is :mod:`ferry.explain.runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferry.errors import BackgroundMissing, DataValidationError
from ferry.explain.plan import CoalitionPlan, plan_for
from ferry.explain.runtime import attribute
from ferry.explain.store import EXPLAIN_FILE, ExplainFile
from ferry.registry import ModelVersion, Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer

__all__ = ["Explainer", "Explanation", "load_explainer"]

MAX_TILE_ROWS = 1
"""By default each explained row is its own onnxruntime call: onnxruntime's float32 answer for a row can change in
the last bit with the number of rows in the call (seen on a multiclass logistic regression), and one row per call is
what a single-record online or device request does, so every surface gives the same bits whatever its batch size."""


@dataclass(frozen=True)
class Explanation:
    """Per row: the attributions of each feature (schema order), their standard error, the base value, the
    prediction explained (a class's probability, or the value), the class explained, and the top features."""

    features: tuple[str, ...]
    values: np.ndarray  # (n, d)
    error: np.ndarray  # (n, d); zeros when exact
    base: np.ndarray  # (n,)
    prediction: np.ndarray  # (n,)
    target: tuple[int | str | None, ...]  # the class explained per row; None for a regressor
    top: tuple[tuple[str, ...], ...]  # per row, the top-k features by absolute attribution
    exact: bool


class Explainer:
    """Explains rows of one model: ``model`` (``model.onnx`` bytes), its ``schema`` and a ``background`` input dict.

    ``plan`` defaults to :func:`ferry.explain.plan.plan_for` the feature count; rows go to onnxruntime in chunks of
    whole rows of at most ``max_tile_rows`` tiled rows: one row per call unless asked (see :data:`MAX_TILE_ROWS`).
    """

    def __init__(
        self,
        model: bytes,
        schema: Schema,
        background: dict[str, np.ndarray],
        *,
        plan: CoalitionPlan | None = None,
        max_tile_rows: int = MAX_TILE_ROWS,
    ) -> None:
        self.scorer = OnnxScorer(model)
        self.schema = schema
        self.features = tuple(schema.feature_names)
        self.background = {name: background[name] for name in self.features}
        self.plan = plan if plan is not None else plan_for(len(self.features))
        self.max_tile_rows = max_tile_rows
        if self.plan.masks.shape[1] != len(self.features):
            raise ValueError(f"the plan covers {self.plan.masks.shape[1]} features, the model {len(self.features)}")

    def _check(self, inputs: dict[str, np.ndarray]) -> int:
        for name in inputs:
            if name not in self.features:
                raise DataValidationError(name, "unknown", "not a feature of this model's schema")
        lengths: set[int] = set()
        for name in self.features:
            if name not in inputs:
                raise DataValidationError(name, "required", "the feature is missing")
            column = np.asarray(inputs[name])
            if column.ndim != 2 or column.shape[1] != 1:
                raise DataValidationError(name, "shape", f"expected an (n, 1) column, got shape {column.shape}")
            lengths.add(int(column.shape[0]))
        if len(lengths) != 1:
            raise DataValidationError(
                self.features[0], "shape", f"the features have different row counts {sorted(lengths)}"
            )
        return lengths.pop()

    def _class_index(self, target: int | str | None) -> int:
        if target is None:
            return -1
        if self.scorer.task == "regression":
            raise DataValidationError("class", "task", "a regression model explains its value; ask for no class")
        classes = [str(c) for c in self.scorer.classes]
        if str(target) not in classes:
            raise DataValidationError("class", "levels", f"{target!r} is not one of the model's classes {classes}")
        return classes.index(str(target))

    def explain(
        self, inputs: dict[str, np.ndarray], *, target: int | str | None = None, top_k: int | None = None
    ) -> Explanation:
        """Explain each row of ``inputs`` for the class ``target`` (default: the class predicted for each row; a
        regressor: its value), naming its ``top_k`` features (default: all, by absolute attribution)."""
        d = len(self.features)
        k = d if top_k is None else top_k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d:
            raise DataValidationError(
                "top_k", "range", f"must be a whole number from 1 to {d} (the features), got {k!r}"
            )
        n = self._check(inputs)
        index = self._class_index(target)
        per_row = self.plan.masks.shape[0] * len(self.background[self.features[0]])
        step = max(1, self.max_tile_rows // per_row)
        parts = []
        for start in range(0, n, step):
            chunk = {name: np.asarray(inputs[name])[start : start + step] for name in self.features}
            parts.append(
                attribute(
                    self.scorer.session,
                    self.scorer.output_names,
                    chunk,
                    self.background,
                    list(self.features),
                    self.plan.masks,
                    self.plan.weights,
                    target=np.full(len(chunk[self.features[0]]), index, dtype=np.int64),
                )
            )
        values = np.concatenate([p.values for p in parts]) if parts else np.zeros((0, d))
        order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
        classes = self.scorer.classes
        return Explanation(
            features=self.features,
            values=values,
            error=np.concatenate([p.error for p in parts]) if parts else np.zeros((0, d)),
            base=np.concatenate([p.base for p in parts]) if parts else np.zeros(0),
            prediction=np.concatenate([p.prediction for p in parts]) if parts else np.zeros(0),
            target=tuple(
                None if t < 0 else (classes[t] if classes else int(t)) for p in parts for t in p.target.tolist()
            ),
            top=tuple(tuple(self.features[j] for j in row) for row in order.tolist()),
            exact=self.plan.exact,
        )


def load_explainer(registry: Registry, version: ModelVersion | str) -> Explainer:
    """The explainer of a registered version: its ``model.onnx`` with the plan and background of its ``explain.npz``."""
    v = version if isinstance(version, ModelVersion) else registry.get(version)
    if EXPLAIN_FILE not in v.files:
        raise BackgroundMissing(
            f"version {v.model}/{v.id} has no background sample ({EXPLAIN_FILE}) to explain against; register the "
            f"model again (ferry train, or ferry register with its data) so that the new version carries one"
        )
    stored = ExplainFile.from_bytes(registry.read_bytes(v, EXPLAIN_FILE), name=registry.file_url(v, EXPLAIN_FILE))
    return Explainer(registry.read_bytes(v, "model.onnx"), registry.schema(v), stored.background, plan=stored.plan)
