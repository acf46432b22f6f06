"""An installed model: its manifest, an onnxruntime session, input checks from the bundle's schema, its answer
per task (the same JSON as the online service's ``/predict``, plus the version), and :meth:`EdgeModel.explain`
(attributions from the bundle's ``explain.npz``, :mod:`ferry_edge.explain`):

| task | answer |
|---|---|
| binary, multiclass | :class:`Prediction`: ``prediction`` (the class) and ``probabilities`` (every class) |
| regression | :class:`ValuePrediction`: ``value``, ``lower``, ``upper`` (the interval) and ``coverage`` |

The model's outputs are ``label`` (a class index) and ``probabilities`` for a classifier, ``value``, ``lower`` and
``upper`` for a regressor; numbers are the float32 outputs as exact floats, as on every other surface.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ferry_edge import explain as explaining
from ferry_edge.errors import BundleRejected, InputError, NotExplainable

PROVIDERS = ["CPUExecutionProvider"]
CLASS_OUTPUTS = ["label", "probabilities"]
VALUE_OUTPUTS = ["value", "lower", "upper"]


@dataclass(frozen=True)
class Prediction:
    """A classifier's answer for one row."""

    prediction: int | str
    probabilities: dict[str, float]
    version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ValuePrediction:
    """A regressor's answer for one row: the value and its prediction interval at ``coverage``."""

    value: float
    lower: float
    upper: float
    coverage: float | None
    version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def task_of(manifest: Mapping[str, Any], outputs: Sequence[str]) -> str:
    """The task: the manifest's, else the schema's, else what the outputs say (bundles made before tasks)."""
    declared = manifest.get("task") or manifest.get("schema", {}).get("task")
    if declared in ("binary", "multiclass", "regression"):
        return str(declared)
    return "regression" if list(outputs) == VALUE_OUTPUTS else "binary"


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
        self.task = task_of(self.manifest, self.output_names)
        expected = VALUE_OUTPUTS if self.task == "regression" else CLASS_OUTPUTS
        if self.output_names != expected:
            raise BundleRejected(
                f"model {self.version} is a {self.task} model but answers {self.output_names}, not {expected}"
            )
        self.classes: list[Any] = list(self.manifest["schema"].get("target_classes") or [])
        coverage = (self.manifest.get("interval") or {}).get("coverage")
        self.coverage: float | None = float(coverage) if isinstance(coverage, int | float) else None
        self._explain_file: explaining.ExplainFile | None = None

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

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The model's outputs, in :attr:`output_names` order (``label``/``probabilities`` or ``value``/``lower``/
        ``upper``), each as an array (a regressor's flattened to one value per row)."""
        outputs = self.session.run(self.output_names, inputs)
        if self.task == "regression":
            return [np.asarray(a).reshape(-1) for a in outputs]
        return [np.asarray(a) for a in outputs]

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[Prediction] | list[ValuePrediction]:
        """One answer per row (see the module docstring); InputError names the first bad field."""
        if not rows:
            return []
        outputs = self.run(self.prepare(rows))
        if self.task == "regression":
            value, lower, upper = (a.tolist() for a in outputs)
            rows_out = zip(value, lower, upper, strict=True)
            return [ValuePrediction(v, lo, hi, self.coverage, self.version) for v, lo, hi in rows_out]
        labels, probs = outputs
        classes = self.classes or list(range(probs.shape[1]))
        keys = [str(c) for c in classes]
        return [
            Prediction(classes[int(label)], dict(zip(keys, row, strict=True)), self.version)
            for label, row in zip(labels.tolist(), probs.tolist(), strict=True)
        ]

    @property
    def explainable(self) -> bool:
        """True when the bundle carries ``explain.npz`` (its version was registered with a background sample)."""
        return (self.directory / explaining.EXPLAIN_FILE).is_file()

    def explain_file(self) -> explaining.ExplainFile:
        """The bundle's plan and background (read once); NotExplainable naming the version when it has none."""
        if self._explain_file is None:
            if not self.explainable:
                raise NotExplainable(
                    f"version {self.version} cannot be explained: its bundle carries no {explaining.EXPLAIN_FILE} "
                    "(background sample); re-register the model (ferry train, or ferry register with its data) and "
                    "publish the new version"
                )
            path = self.directory / explaining.EXPLAIN_FILE
            self._explain_file = explaining.ExplainFile.read(path, [f["name"] for f in self.features])
        return self._explain_file

    def explain(
        self, rows: Sequence[Mapping[str, Any]], *, target: int | str | None = None, top_k: int | None = None
    ) -> list[dict[str, Any]]:
        """One explanation per row, for the class ``target`` (default: the class predicted for the row; a regressor:
        its value), naming the ``top_k`` features with the largest absolute attributions (default 5, at most the
        features). The JSON shape is in :mod:`ferry_edge.explain`; InputError names a bad field, ``top_k`` or
        ``class``; NotExplainable says the version has no ``explain.npz``."""
        stored = self.explain_file()
        explaining.top_k_of(top_k, len(stored.features))
        explaining.class_index(target, task=self.task, classes=self.classes)
        if not rows:
            return []
        return explaining.explain(
            self.session,
            self.output_names,
            stored,
            self.prepare(rows),
            task=self.task,
            classes=self.classes,
            target=target,
            top_k=top_k,
        )
