"""The runtime needs only numpy: loaded from its file alone, in a fresh interpreter, it explains a row of a real
``model.onnx`` through onnxruntime without importing ferry, pandas or scikit-learn (what a device has)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import ferry.explain.runtime
from ferry.explain import Explainer, exact_plan
from ferry.schema import Schema
from ferry.train.onnx_export import to_onnx

SCRIPT = """
import importlib.util, json, sys
import numpy as np, onnxruntime as ort
spec = importlib.util.spec_from_file_location("runtime", sys.argv[1])
runtime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runtime)
plan = np.load(sys.argv[3])
session = ort.InferenceSession(open(sys.argv[2], "rb").read(), providers=["CPUExecutionProvider"])
rows = {"a": np.array([[0.5]], np.float32), "b": np.array([[-1.0]], np.float32)}
background = {"a": np.linspace(-1, 1, 9, dtype=np.float32).reshape(-1, 1),
              "b": np.linspace(1, -1, 9, dtype=np.float32).reshape(-1, 1)}
found = runtime.attribute(session, [o.name for o in session.get_outputs()], rows, background, ["a", "b"],
                          plan["masks"], plan["weights"])
heavy = sorted(m for m in ("ferry", "pandas", "sklearn", "skl2onnx") if m in sys.modules)
print(json.dumps({"values": found.values.tolist(), "heavy": heavy}))
"""


def test_the_runtime_runs_alone_and_gives_the_same_attributions(tmp_path: Path) -> None:
    schema = Schema.from_dict(
        {
            "name": "alone",
            "target": "y",
            "task": "binary",
            "target_classes": [0, 1],
            "features": [{"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"}],
        }
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    pipeline = Pipeline([("pre", ColumnTransformer([("num", "passthrough", [0, 1])])), ("est", LogisticRegression())])
    pipeline.fit(x, (x[:, 0] - x[:, 1] > 0).astype(int))
    model = to_onnx(pipeline, schema)
    (tmp_path / "model.onnx").write_bytes(model)
    plan = exact_plan(2)
    (tmp_path / "plan.npz").write_bytes(plan.to_bytes())
    runtime_file = ferry.explain.runtime.__file__
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, runtime_file, str(tmp_path / "model.onnx"), str(tmp_path / "plan.npz")],
        capture_output=True,
        text=True,
        check=True,
    )
    alone = json.loads(done.stdout)
    assert alone["heavy"] == []
    background = {
        "a": np.linspace(-1, 1, 9, dtype=np.float32).reshape(-1, 1),
        "b": np.linspace(1, -1, 9, dtype=np.float32).reshape(-1, 1),
    }
    rows = {"a": np.array([[0.5]], np.float32), "b": np.array([[-1.0]], np.float32)}
    here = Explainer(model, schema, background, plan=plan).explain(rows)
    assert np.array_equal(np.array(alone["values"]), here.values)
