"""Score rows with ``model.onnx`` through onnxruntime: the one scoring path shared by batch, online and edge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

PROVIDERS = ["CPUExecutionProvider"]


@dataclass(frozen=True)
class Scores:
    labels: np.ndarray  # (n,) int64 class index (1 = positive class)
    probabilities: np.ndarray  # (n, 2) float32 [P(negative), P(positive)]


class OnnxScorer:
    """An onnxruntime session over a ferry ``model.onnx`` (one input per feature, outputs label + probabilities)."""

    def __init__(self, model: bytes, *, intra_op_threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model, sess_options=options, providers=PROVIDERS)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def score(self, inputs: dict[str, np.ndarray]) -> Scores:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ValueError(f"inputs lack the model's input(s) {missing}")
        label, prob = self.session.run(self.output_names, {n: inputs[n] for n in self.input_names})
        return Scores(labels=np.asarray(label), probabilities=np.asarray(prob))
