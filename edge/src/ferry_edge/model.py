"""An installed model: its manifest, an onnxruntime session, and input checks from the bundle's schema."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ferry_edge.errors import BundleRejected, InputError

PROVIDERS = ["CPUExecutionProvider"]


@dataclass(frozen=True)
class Prediction:
    prediction: int
    probabilities: list[float]
    version: str


class EdgeModel:
    """A model directory (``bundle.json`` + ``model.onnx``) loaded into onnxruntime."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.manifest: dict[str, Any] = json.loads((self.directory / "bundle.json").read_text())
        self.version: str = self.manifest["version"]
        self.features: list[dict[str, Any]] = list(self.manifest["schema"]["features"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.directory / "model.onnx"), sess_options=options, providers=PROVIDERS
            )
        except Exception as exc:  # onnxruntime raises its own exception types for unloadable models
            raise BundleRejected(f"onnxruntime cannot load model {self.version}: {exc}") from exc
        self.output_names = [o.name for o in self.session.get_outputs()]

    def prepare(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """One (n, 1) array per feature, or InputError naming the first bad field (no silent zeros)."""
        inputs: dict[str, np.ndarray] = {}
        for f in self.features:
            name, nullable = f["name"], f.get("nullable", True)
            values: list[Any] = []
            for i, row in enumerate(rows):
                if name not in row:
                    raise InputError(name, "required field is missing", row=i)
                v = row[name]
                missing = v is None or (isinstance(v, float) and math.isnan(v))
                if missing and not nullable:
                    raise InputError(name, "must not be null", row=i)
                if f["type"] == "numeric":
                    if missing:
                        values.append(math.nan)
                        continue
                    if isinstance(v, bool) or not isinstance(v, int | float):
                        raise InputError(name, f"expected a number, got {type(v).__name__} {v!r}", row=i)
                    if math.isinf(v):
                        raise InputError(name, "must be finite", row=i)
                    lo, hi = f.get("min"), f.get("max")
                    if (lo is not None and v < lo) or (hi is not None and v > hi):
                        raise InputError(name, f"{v!r} is outside [{lo}, {hi}]", row=i)
                    values.append(v)
                else:
                    if missing:
                        values.append("")
                        continue
                    if not isinstance(v, str):
                        raise InputError(name, f"expected a string, got {type(v).__name__} {v!r}", row=i)
                    levels = f.get("levels")
                    if levels and not f.get("allow_unknown", True) and v not in levels:
                        raise InputError(name, f"{v!r} is not one of {levels}", row=i)
                    values.append(v)
            dtype: Any = np.float32 if f["type"] == "numeric" else object
            inputs[name] = np.asarray(values, dtype=dtype).reshape(-1, 1)
        return inputs

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        label, prob = self.session.run(self.output_names, inputs)
        return np.asarray(label), np.asarray(prob)

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        if not rows:
            return []
        labels, probs = self.run(self.prepare(rows))
        return [
            Prediction(int(lab), [float(p) for p in pr], self.version) for lab, pr in zip(labels, probs, strict=True)
        ]
