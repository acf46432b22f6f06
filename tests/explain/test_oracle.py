"""The attributions agree with ``shap``'s exact interventional values on small tree and linear models exported as
every ferry model is (``ferry.train.onnx_export``), against the same background.

Tolerance: 1e-4 absolute. ferry evaluates the float32 ONNX model (onnxruntime sums tree leaves and linear terms in
float32); shap evaluates scikit-learn in float64. Features are rounded to float32 first, and the trees' thresholds
aligned to float32 as the export does, so both walk the same branches.

Integration: importing shap takes ~4 s and its exact explainer compiles (numba) for ~11 s on first use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import shap
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from ferry.explain import Explainer, exact_plan
from ferry.schema import Schema
from ferry.train.metrics import Interval
from ferry.train.onnx_export import align_thresholds_to_float32, to_onnx

pytestmark = pytest.mark.integration

TOLERANCE = 1e-4
FEATURES = ["a", "b", "c", "d"]


def schema(task: str) -> Schema:
    return Schema.from_dict(
        {
            "name": f"oracle-{task}",
            "target": "y",
            "task": task,
            **({"target_classes": [0, 1]} if task == "binary" else {}),
            "features": [{"name": n, "type": "numeric"} for n in FEATURES],
        }
    )


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES))).astype(np.float32).astype(np.float64)
    return pd.DataFrame(x, columns=FEATURES)


def model(estimator: Any, task: str) -> tuple[Pipeline, bytes, Any]:
    """Fit, export with ferry's export, and return (pipeline, model.onnx, what shap explains)."""
    x = frame(400, seed=1)
    signal = 2.0 * x["a"] - x["b"] + x["a"] * x["c"] + 0.5 * (x["d"] > 0)
    y = (signal > 0).astype(int) if task == "binary" else signal
    pipeline = Pipeline([("pre", ColumnTransformer([("num", "passthrough", FEATURES)])), ("est", estimator)])
    pipeline.fit(x, y)
    align_thresholds_to_float32(pipeline)
    interval = None if task == "binary" else Interval(0.9, 0.5, 100, 100, 0.9)
    onnx_model = to_onnx(pipeline, schema(task), interval=interval)
    return pipeline, onnx_model, estimator


def inputs(x: pd.DataFrame) -> dict[str, np.ndarray]:
    return {n: x[n].to_numpy(np.float32).reshape(-1, 1) for n in FEATURES}


CASES = [
    ("regression", DecisionTreeRegressor(max_depth=5, random_state=0), "tree"),
    ("regression", LinearRegression(), "linear"),
    ("binary", DecisionTreeClassifier(max_depth=4, random_state=0), "tree"),
    ("binary", LogisticRegression(), "exact"),
]


@pytest.mark.parametrize(("task", "estimator", "oracle"), CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_attributions_agree_with_shap(task: str, estimator: Any, oracle: str) -> None:
    pipeline, onnx_model, fitted = model(estimator, task)
    background = frame(30, seed=2)
    rows = frame(6, seed=3)
    explainer = Explainer(onnx_model, schema(task), inputs(background), plan=exact_plan(len(FEATURES)))
    # binary: explain P(class 1) on every row, as shap explains predict_proba[:, 1]
    found = explainer.explain(inputs(rows), target=1 if task == "binary" else None)

    def f(data: np.ndarray) -> np.ndarray:
        out = pipeline.predict_proba(pd.DataFrame(data, columns=FEATURES))[:, 1] if task == "binary" else None
        return np.asarray(out if out is not None else pipeline.predict(pd.DataFrame(data, columns=FEATURES)))

    if oracle == "tree":
        tree = shap.TreeExplainer(
            fitted, data=background.to_numpy(), feature_perturbation="interventional", model_output="raw"
        )
        expected = np.asarray(tree.shap_values(rows.to_numpy(), check_additivity=True))
        if expected.ndim == 3:  # classifiers: (n, d, classes)
            expected = expected[:, :, 1]
    elif oracle == "linear":
        linear = shap.LinearExplainer(fitted, shap.maskers.Independent(background.to_numpy(), max_samples=100))
        expected = np.asarray(linear.shap_values(rows.to_numpy()))
    else:
        masker = shap.maskers.Independent(background.to_numpy(), max_samples=len(background))
        expected = shap.explainers.Exact(f, masker)(rows.to_numpy()).values
    np.testing.assert_allclose(found.values, expected, rtol=0, atol=TOLERANCE)
    # shap's base value is the same mean of f over the background
    np.testing.assert_allclose(found.base, np.mean(f(background.to_numpy())), rtol=0, atol=TOLERANCE)
    assert found.exact
    assert not found.error.any()
