"""The online service per task, through its plain functions: a multiclass model (``examples/defects``, string labels)
answers a class and every class's probability, a regressor (``examples/demand``) a value and its interval; the
prediction log, feedback, metrics and shadow agreement follow the task."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ferry.cli.parity import records
from ferry.online.answer import agrees
from ferry.online.holder import ModelHolder
from ferry.online.ids import PredictionIds
from ferry.online.logs import FeedbackLog, PredictionLog
from ferry.online.metrics import OnlineMetrics
from ferry.online.predict import FeedbackItem, Prediction, ValuePrediction, check_feedback, predict
from ferry.online.records import RequestRejected, prepare
from ferry.scoring import OnnxScorer


def _loaded(task_models: dict[str, Any], name: str) -> Any:
    holder = ModelHolder(task_models["registry"], name, "online/champion")
    loaded = holder.refresh()
    assert loaded is not None, holder.failures
    return loaded


def _rows(task_models: dict[str, Any], name: str, loaded: Any, n: int = 40) -> list[dict[str, Any]]:
    return records(pd.read_csv(task_models[name]["data"]).head(n), loaded.schema)


def _read(files: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_a_multiclass_answer_has_the_class_and_every_probability_and_logs_them(
    task_models: dict[str, Any], tmp_path: Path
) -> None:
    loaded = _loaded(task_models, "defects")
    rows = _rows(task_models, "defects", loaded)
    answer = predict(loaded, rows)
    expected = OnnxScorer(_model(task_models, "defects")).rows(prepare(rows, loaded.served))
    classes = ["none", "scratch", "dent", "crack"]
    assert all(isinstance(p, Prediction) for p in answer.predictions)
    got = [(p.prediction, p.probabilities) for p in answer.predictions if isinstance(p, Prediction)]
    assert got == [(e["label"], e["probabilities"]) for e in expected]
    assert all(list(probs) == classes for _, probs in got)
    assert len({label for label, _ in got}) > 1  # not a degenerate model
    log = PredictionLog(str(tmp_path / "reg"), "defects", sample_rate=1.0)
    assert log.record(loaded, rows, answer) == len(rows)
    log.flush()
    logged = _read(log.files)
    assert {f"prob_{c}" for c in classes} <= set(logged.columns)
    assert not {"p_positive", "value", "lower", "upper"} & set(logged.columns)
    assert logged["prediction"].tolist() == [label for label, _ in got]
    for c in classes:
        assert logged[f"prob_{c}"].tolist() == [probs[c] for _, probs in got]


def test_a_regression_answer_has_the_value_and_its_interval_and_logs_them(
    task_models: dict[str, Any], tmp_path: Path
) -> None:
    loaded = _loaded(task_models, "demand")
    rows = _rows(task_models, "demand", loaded)
    answer = predict(loaded, rows)
    expected = OnnxScorer(_model(task_models, "demand")).rows(prepare(rows, loaded.served))
    assert all(isinstance(p, ValuePrediction) for p in answer.predictions)
    got = [p.model_dump(exclude={"prediction_id"}) for p in answer.predictions]
    assert got == expected
    coverage = got[0]["coverage"]
    assert 0 < coverage < 1
    assert all(g["lower"] < g["value"] < g["upper"] for g in got)
    log = PredictionLog(str(tmp_path / "reg"), "demand", sample_rate=1.0)
    log.record(loaded, rows, answer)
    log.flush()
    logged = _read(log.files)
    assert not {"prediction", "p_positive"} & set(logged.columns)
    assert not [c for c in logged.columns if c.startswith("prob_")]
    for column in ("value", "lower", "upper"):
        assert logged[column].dtype == np.float64
        assert logged[column].tolist() == [g[column] for g in got]


def _model(task_models: dict[str, Any], name: str) -> bytes:
    registry = task_models["registry"]
    return bytes(registry.read_bytes(registry.get(task_models[name]["version"].id, model=name), "model.onnx"))


def test_feedback_takes_a_class_of_a_multiclass_model_and_refuses_others(
    task_models: dict[str, Any], tmp_path: Path
) -> None:
    loaded = _loaded(task_models, "defects")
    ids = PredictionIds.for_model(str(tmp_path / "reg"), "defects")
    answer = predict(loaded, _rows(task_models, "defects", loaded, 3), ids=ids)
    pid = [p.prediction_id for p in answer.predictions]
    pairs = check_feedback(loaded, [FeedbackItem(prediction_id=pid[0], label="dent")], ids)
    assert pairs == [(pid[0], "dent")]
    for bad in ("rust", 2, True):
        items = [FeedbackItem(prediction_id=pid[0], label="none"), FeedbackItem(prediction_id=pid[1], label=bad)]
        with pytest.raises(RequestRejected) as caught:
            check_feedback(loaded, items, ids)
        assert caught.value.status == 422
        assert caught.value.field == "[1].label", bad


@pytest.mark.parametrize(
    ("label", "rule"),
    [
        ("12.5", "target_numeric"),
        (True, "target_numeric"),
        (math.nan, "target_finite"),
        (math.inf, "target_finite"),
        pytest.param(10**400, "target_finite", id="an-integer-beyond-any-float"),
        (-1.0, "target_range"),
    ],
)
def test_feedback_of_a_regressor_refuses_what_is_not_a_value_in_range(
    task_models: dict[str, Any], tmp_path: Path, label: Any, rule: str
) -> None:
    loaded = _loaded(task_models, "demand")
    ids = PredictionIds.for_model(str(tmp_path / "reg"), "demand")
    pid = [ids.new(), ids.new()]
    items = [FeedbackItem(prediction_id=pid[0], label=3), FeedbackItem(prediction_id=pid[1], label=label)]
    with pytest.raises(RequestRejected) as caught:
        check_feedback(loaded, items, ids)
    assert (caught.value.status, caught.value.field, caught.value.rule) == (422, "[1].label", rule)


def test_feedback_of_a_regressor_is_stored_as_a_float(task_models: dict[str, Any], tmp_path: Path) -> None:
    loaded = _loaded(task_models, "demand")
    ids = PredictionIds.for_model(str(tmp_path / "reg"), "demand")
    pid = [ids.new(), ids.new()]
    pairs = check_feedback(
        loaded, [FeedbackItem(prediction_id=pid[0], label=3), FeedbackItem(prediction_id=pid[1], label=41.25)], ids
    )
    assert pairs == [(pid[0], 3.0), (pid[1], 41.25)]
    log = FeedbackLog(str(tmp_path / "reg"), "demand")
    log.record(pairs)
    log.flush()
    stored = _read(log.files)
    assert stored["label"].dtype == np.float64
    assert stored["label"].tolist() == [3.0, 41.25]


def test_metrics_count_predicted_classes_and_a_histogram_of_values(task_models: dict[str, Any]) -> None:
    metrics = OnlineMetrics()
    defects = _loaded(task_models, "defects")
    answer = predict(defects, _rows(task_models, "defects", defects))
    metrics.predicted(defects.id, [str(p.prediction) for p in answer.predictions if isinstance(p, Prediction)])
    demand = _loaded(task_models, "demand")
    assert len(demand.value_buckets) >= 5  # deciles of the version's answers on its reference
    assert list(demand.value_buckets) == sorted(demand.value_buckets)
    values = [p.value for p in predict(demand, _rows(task_models, "demand", demand)).predictions]  # type: ignore[union-attr]
    metrics.values(demand.id, values, demand.value_buckets)
    text = metrics.render()
    counted = {
        c: sum(1 for p in answer.predictions if isinstance(p, Prediction) and p.prediction == c)
        for c in ("none", "scratch", "dent", "crack")
    }
    for c, n in counted.items():
        line = f'ferry_online_predicted_class_total{{version="{defects.id}",class="{c}"}} {n}'
        assert (line in text) == (n > 0), line
    assert f'ferry_online_value_count{{version="{demand.id}"}} {len(values)}' in text
    top = demand.value_buckets[-1]
    below = sum(v <= top for v in values)
    assert f'ferry_online_value_bucket{{version="{demand.id}",le="{top}"}} {below}' in text
    assert "ferry_online_score_count" not in text  # no binary model answered


def test_shadow_agreement_is_the_same_class_or_a_value_inside_the_interval() -> None:
    value = ValuePrediction(prediction_id="a", value=10.0, lower=8.0, upper=12.0, coverage=0.9)
    assert agrees(value, value.model_copy(update={"value": 11.9}))
    assert not agrees(value, value.model_copy(update={"value": 12.1}))
    cls = Prediction(prediction_id="b", prediction="dent", probabilities={"dent": 0.6, "crack": 0.4})
    assert agrees(cls, cls.model_copy(update={"probabilities": {"dent": 0.9, "crack": 0.1}}))
    assert not agrees(cls, cls.model_copy(update={"prediction": "crack"}))
    assert not agrees(cls, value)


@pytest.mark.parametrize("name", ["defects", "demand"])
def test_the_answerer_counts_the_task_and_shadows_a_challenger(
    task_models: dict[str, Any], tmp_path: Path, name: str
) -> None:
    """The path every request takes (:class:`Answerer`): the task's distribution in the metrics, the challenger
    scored in shadow and logged beside the answer, agreement counted per the task's rule (here: the same model)."""
    import shutil

    from helpers import clone_version

    from ferry.online.answer import Answerer
    from ferry.online.routing import Router
    from ferry.registry import Registry

    shutil.copytree(task_models["root"] / "reg", tmp_path / "reg")
    registry = Registry(str(tmp_path / "reg"))
    champion = registry.get(task_models[name]["version"].id, model=name)
    challenger_id = clone_version(registry, champion, tmp_path / "clone", note="challenger")
    champion_holder = ModelHolder(registry, name, "online/champion")
    challenger_holder = ModelHolder(registry, name, "online/challenger", pinned=challenger_id)
    champion_holder.refresh()
    challenger_holder.refresh()
    metrics = OnlineMetrics()
    log = PredictionLog(registry.url, name, sample_rate=1.0)
    answerer = Answerer(
        champion_holder,
        challenger=challenger_holder,
        router=Router("shadow"),
        metrics=metrics,
        prediction_log=log,
        max_records=100,
    )
    loaded = champion_holder.current
    assert loaded is not None
    rows = _rows(task_models, name, loaded, 25)
    answer = answerer.answer(rows)
    assert answer.version == champion.id
    assert (metrics.shadow_rows, metrics.shadow_agree) == (25, 25)
    text = metrics.render()
    if name == "demand":
        assert f'ferry_online_value_count{{version="{champion.id}"}} 25' in text
    else:
        assert sum(n for (v, _), n in metrics.classes.items() if v == champion.id) == 25
    assert "ferry_online_score_count" not in text
    log.flush()
    logged = _read(log.files)
    assert sorted(logged.groupby("role")["version"].first().items()) == [
        ("answer", champion.id),
        ("shadow", challenger_id),
    ]
    answer_columns = ["value", "lower", "upper"] if name == "demand" else ["prediction", "prob_dent"]
    assert logged[answer_columns].notna().all().all()
