"""Bring your own pipeline: fitted elsewhere, then export, parity, the gate against the champion on the user's
holdout, register and promote; every refusal before anything is registered."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from helpers import example_maker
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler
from typer.testing import CliRunner

from ferry.cli import app
from ferry.errors import ConfigError, ExportError, SchemaError
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.train.byo import register_pipeline

REPO = Path(__file__).resolve().parents[2]
NUMERIC = ["price", "temperature", "promo"]


def _demand() -> pd.DataFrame:
    frame: pd.DataFrame = example_maker("demand").make_frame(1100, seed=5)
    return frame


def _pipeline(final: Any, numeric: Any = None) -> Pipeline:
    pre = ColumnTransformer(
        [("num", numeric or StandardScaler(), NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), ["weekday"])]
    )
    return Pipeline([("pre", pre), ("model", final)])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A demand regressor fitted "in a notebook" on the first rows, and the later rows as its holdout."""
    root = tmp_path_factory.mktemp("byo")
    frame = _demand()
    fit, holdout = frame.iloc[:500], frame.iloc[500:]
    features = fit[["weekday", *NUMERIC]]
    good = _pipeline(Ridge(alpha=1.0)).fit(features, fit["units"])
    sio.dump(good, root / "good.skops")
    worse = _pipeline(Ridge(alpha=1.0)).fit(
        features[["weekday", "price", "temperature"]].assign(promo=0.0), fit["units"]
    )
    with (root / "worse.pkl").open("wb") as fh:
        pickle.dump(worse, fh)
    spline = _pipeline(Ridge(), numeric=SplineTransformer()).fit(features, fit["units"])
    sio.dump(spline, root / "spline.skops")
    narrow = Pipeline([("pre", ColumnTransformer([("num", StandardScaler(), ["price"])])), ("model", Ridge())])
    sio.dump(narrow.fit(fit[["price"]].assign(discount=0.1), fit["units"]), root / "narrow.skops")
    holdout.to_csv(root / "holdout.csv", index=False)
    return {"root": root, "holdout": root / "holdout.csv", "schema": REPO / "examples/demand/schema.yaml"}


def _register(files: dict[str, Path], registry: Registry, name: str, **kw: Any) -> dict[str, Any]:
    return register_pipeline(
        files["root"] / name,
        str(files["schema"]),
        str(files["holdout"]),
        registry,
        ["online/champion"],
        work_dir=files["root"] / "runs",
        **kw,
    )


@pytest.mark.integration  # the whole gate with Evidently, twice: kept out of the fast set
def test_a_fitted_pipeline_is_gated_registered_and_then_compared(files: dict[str, Path], tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "reg"))
    result = ferry_register(files, tmp_path, "good.skops")  # the command, as a user runs it
    assert result.exit_code == 0, result.output
    assert "PROMOTED" in result.output
    first = {"version": registry.channel("demand", "online/champion")}
    version = registry.get(str(first["version"]), model="demand")
    assert version.info["gate"]["passed"]
    lineage = json.loads(registry.read_bytes(version, "lineage.json"))
    assert lineage["pipeline"]["format"] == "skops"
    assert lineage["pipeline"]["trust_pickle"] is False
    assert lineage["estimator"] == "sklearn.linear_model.Ridge"
    # the explain step runs on this path too: the version carries its importance table and pictures
    assert {"importance.json", "plot_importance.svg", "plot_predicted.svg", "plot_residuals.svg"} <= set(version.files)
    names = {c["name"] for c in json.loads(registry.read_bytes(version, "gate.json"))["checks"]}
    assert {"onnx.parity_max_rel_diff", "model.interval_coverage", "behaviour.batch_invariance"} <= names
    # a pickle only with trust, which the lineage records; then it is judged against the champion
    with pytest.raises(ConfigError, match="is a pickle, which can run any code when loaded; save the pipeline"):
        _register(files, registry, "worse.pkl")
    second = _register(files, registry, "worse.pkl", trust_pickle=True)
    assert second["champion"] == first["version"]
    vs = [c for c in second["checks"] if c["name"] == "model.rmse_vs_champion"]
    assert len(vs) == 1
    assert not vs[0]["passed"]  # it ignores promotions: worse than the champion
    assert second["promoted"] == []
    assert registry.channel("demand", "online/champion") == first["version"]
    lineage = json.loads(registry.read_bytes(registry.get(second["version"], model="demand"), "lineage.json"))
    assert lineage["pipeline"]["trust_pickle"] is True


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        (
            "spline.skops",
            ExportError,
            "step 'pre/num' (SplineTransformer) has no ONNX converter; use PolynomialFeatures",
        ),
        (
            "narrow.skops",
            SchemaError,
            "reads column(s) ['discount'] the schema does not declare as features",
        ),
        ("missing.skops", ConfigError, "pipeline file not found"),
    ],
    ids=["unconvertible-step", "mismatched-columns", "missing-file"],
)
def test_refused_pipelines_register_nothing(
    files: dict[str, Path], tmp_path: Path, name: str, error: type[Exception], message: str
) -> None:
    registry = Registry(str(tmp_path / "reg"))
    with pytest.raises(error) as info:
        _register(files, registry, name)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert registry.models() == []


@pytest.mark.integration  # the whole gate with Evidently: kept out of the fast set
def test_classes_must_follow_target_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600)})
    frame["y"] = np.where(frame["a"] > 0.5, "high", np.where(frame["a"] < -0.5, "low", "mid"))
    pipeline = Pipeline(
        [("pre", ColumnTransformer([("num", StandardScaler(), ["a", "b"])])), ("m", LogisticRegression())]
    )
    sio.dump(pipeline.fit(frame[["a", "b"]], frame["y"]), tmp_path / "p.skops")
    frame.to_csv(tmp_path / "holdout.csv", index=False)
    doc = {
        "name": "levels",
        "target": "y",
        "features": [{"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"}],
    }
    for order, ok in ((["low", "mid", "high"], False), (["high", "low", "mid"], True)):
        (tmp_path / "s.json").write_text(json.dumps(doc | {"target_classes": order}))
        registry = Registry(str(tmp_path / f"reg-{ok}"))
        if not ok:
            with pytest.raises(SchemaError, match=r"list target_classes in the pipeline's order"):
                register_pipeline(
                    tmp_path / "p.skops", str(tmp_path / "s.json"), str(tmp_path / "holdout.csv"), registry, []
                )
            assert registry.models() == []
            continue
        out = register_pipeline(
            tmp_path / "p.skops",
            str(tmp_path / "s.json"),
            str(tmp_path / "holdout.csv"),
            registry,
            [],
            work_dir=tmp_path / "runs",
        )
        assert out["gate_passed"], out["reasons"]
        assert (
            Schema.from_dict(
                json.loads(registry.read_bytes(registry.get(out["version"], model="levels"), "schema.json"))
            ).kind
            == "multiclass"
        )


def ferry_register(files: dict[str, Path], tmp_path: Path, pipeline: str) -> Any:
    args = ["--pipeline", str(files["root"] / pipeline), "--schema", str(files["schema"])]
    args += ["--data", str(files["holdout"]), "--registry", str(tmp_path / "reg")]
    env = {"COLUMNS": "200", "FERRY_WORK_DIR": str(tmp_path / "runs")}
    return CliRunner().invoke(app, ["register", *args], env=env)


def test_ferry_register_refuses_a_pickle_in_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    bad = ferry_register(files, tmp_path, "worse.pkl")
    assert bad.exit_code == 2
    assert bad.output.startswith("error: ")
    assert "Traceback" not in bad.output
    assert "or pass --trust-pickle if you trust the file" in " ".join(bad.output.split())
    assert Registry(str(tmp_path / "reg")).models() == []
