"""ONNX export and the sklearn-vs-ONNX parity check."""

from __future__ import annotations

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from ferry.errors import ExportError
from ferry.schema import Schema
from ferry.settings import TrainSettings
from ferry.train import onnx_export as export
from ferry.train import pipeline as train

SCHEMA = Schema.from_dict(
    {
        "name": "toy",
        "target": "y",
        "features": [
            {"name": "a", "type": "numeric"},
            {"name": "b", "type": "numeric"},
            {"name": "c", "type": "categorical", "levels": ["x", "y", "z"]},
        ],
    }
)


def toy_frame(n: int = 3000, seed: int = 0, nan_share: float = 0.1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.normal(size=n)
    c = rng.choice(["x", "y", "z"], size=n)
    logit = 1.5 * a - b + (c == "z") * 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    a[rng.random(n) < nan_share] = np.nan
    return pd.DataFrame({"a": a, "b": b, "c": c.astype(object), "y": y})


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "logistic_regression", "random_forest"])
def test_export_matches_sklearn_on_every_row(estimator: str) -> None:
    df = toy_frame()
    settings = TrainSettings(estimator=estimator, cv_folds=2)
    result = train.fit(df, SCHEMA, settings, param_grid={})
    frame = train.model_frame(df, SCHEMA)
    model = export.to_onnx(result.pipeline, SCHEMA)
    parsed = onnx.load_from_string(model)
    assert [i.name for i in parsed.graph.input] == ["a", "b", "c"]
    assert {p.key: p.value for p in parsed.metadata_props}["ferry.model"] == "toy"
    check = export.parity(result.pipeline, model, frame, SCHEMA, max_abs_diff=1e-5)
    assert check.rows == len(df)
    assert check.passed, check
    assert check.label_agreement == 1.0


def test_parity_catches_random_forest_trained_on_nans_without_imputer() -> None:
    """scikit-learn's forests route NaN natively; the ONNX tree ensemble does not, so the scores differ."""
    df = toy_frame(nan_share=0.3)
    pipeline = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("num", "passthrough", ["a", "b"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["c"]),
                    ]
                ),
            ),
            ("clf", RandomForestClassifier(n_estimators=30, random_state=0)),
        ]
    )
    frame = train.model_frame(df, SCHEMA)
    pipeline.fit(frame, df["y"])
    model = export.to_onnx(pipeline, SCHEMA)
    check = export.parity(pipeline, model, frame, SCHEMA, max_abs_diff=1e-5)
    assert not check.passed
    assert check.max_abs_diff > 1e-3
    assert check.worst_row is not None
    assert np.isnan(frame["a"].iloc[check.worst_row])


def test_unconvertible_pipeline_raises_export_error() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer

    df = toy_frame(500, nan_share=0.0)
    frame = train.model_frame(df, SCHEMA)
    pipeline = Pipeline(
        [
            ("pre", ColumnTransformer([("num", FunctionTransformer(np.tanh), ["a", "b"])])),
            ("clf", LogisticRegression()),
        ]
    )
    pipeline.fit(frame, df["y"])
    with pytest.raises(ExportError, match="skl2onnx could not convert"):
        export.to_onnx(pipeline, SCHEMA)
