"""The explanation file of a version, ``explain.npz``: its coalition plan and its background sample, made once at
registration and read by every surface (the online service, batch scoring, the edge bundle), so that all of them
explain against the same rows with the same coalitions.

It is a plain ``.npz`` (no pickled objects, readable with numpy alone): ``masks`` and ``weights`` (the plan),
``features`` (the schema's feature names, in order) and one ``background.<feature>`` array of shape (b, 1) per
feature, as the model takes it (float32, or text). The background is ``background_rows`` rows of the reference
sample drawn with the seed, features only: no id, timestamp, target or other column. It holds values of data rows,
so it is written encrypted at rest when a key is set, like the reference sample.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ferry.explain.plan import CoalitionPlan, plan_within

if TYPE_CHECKING:
    import pandas as pd

    from ferry.explain.settings import ExplainSettings
    from ferry.schema import Schema

__all__ = ["EXPLAIN_FILE", "ExplainFile", "background_inputs", "build_explain_file"]

EXPLAIN_FILE = "explain.npz"
_PREFIX = "background."


@dataclass(frozen=True)
class ExplainFile:
    """A version's plan and background: ``features`` in schema order, ``background`` one (b, 1) array each."""

    plan: CoalitionPlan
    features: tuple[str, ...]
    background: dict[str, np.ndarray]

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "masks": self.plan.masks,
            "weights": self.plan.weights,
            "features": np.array(self.features, dtype=str),
        }
        for name in self.features:
            column = np.asarray(self.background[name])
            arrays[_PREFIX + name] = column.astype(str) if column.dtype == object else column
        out = io.BytesIO()
        np.savez(out, **arrays)  # type: ignore[arg-type]
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = EXPLAIN_FILE) -> ExplainFile:
        """Read an explanation file; a file that is not one raises ``ValueError`` naming ``name`` and what is wrong."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                features = tuple(str(f) for f in arrays["features"].tolist())
                plan = CoalitionPlan(masks=arrays["masks"].astype(bool), weights=arrays["weights"].astype(np.float64))
                background = {}
                for feature in features:
                    column = arrays[_PREFIX + feature]
                    background[feature] = column.astype(object) if column.dtype.kind == "U" else column
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{name}: not a ferry explanation file ({exc})") from None
        if plan.masks.shape[1] != len(features) or plan.weights.shape[1:] != (len(features), plan.masks.shape[0]):
            raise ValueError(
                f"{name}: the plan ({plan.masks.shape}, {plan.weights.shape}) does not fit {len(features)} features"
            )
        return cls(plan=plan, features=features, background=background)


def background_inputs(reference: pd.DataFrame, schema: Schema, *, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The background as model inputs: ``rows`` rows of ``reference`` drawn with ``seed``, features only."""
    from ferry.data import to_onnx_inputs, validate

    features = schema.model_copy(update={"id": None, "timestamp": None})
    frame = reference[list(schema.feature_names)]
    frame = frame.sample(n=min(rows, len(frame)), random_state=seed).reset_index(drop=True)
    if frame.empty:
        raise ValueError("the background sample is empty: the reference sample holds no rows")
    return to_onnx_inputs(validate(frame, features, require_target=False), features)


def build_explain_file(reference: pd.DataFrame, schema: Schema, settings: ExplainSettings | None = None) -> bytes:
    """The ``explain.npz`` of a new version: its background drawn from ``reference`` and the plan that fits the
    settings' budget."""
    from ferry.explain.settings import ExplainSettings

    s = settings if settings is not None else ExplainSettings()
    background: dict[str, Any] = background_inputs(reference, schema, rows=s.background_rows, seed=s.seed)
    b = len(next(iter(background.values())))
    features = tuple(schema.feature_names)
    plan = plan_within(len(features), rows=b, budget=s.budget, seed=s.seed)
    return ExplainFile(plan=plan, features=features, background=background).to_bytes()
