"""The monitor per task on logs written as the online service writes them: quality from late labels (macro F1 and
log loss, RMSE, MAE and the interval's coverage), labels checked against the schema, and prediction drift of the
class or value distribution. Plain functions on schema-only versions; the trained models' loop is in
``tests/test_loop_tasks.py``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from task_logs import MULTICLASS, REGRESSION, log_answers, schema_only_registry, send_feedback

from ferry import monitor
from ferry.errors import DataError
from ferry.monitor import run as one_run
from ferry.schema import Schema

CLASSES = MULTICLASS["target_classes"]
SETTINGS = monitor.MonitorSettings(min_rows=100)


def class_answer(i: int, *, confidence: float = 0.8) -> dict[str, Any]:
    """Class ``i`` answered with ``confidence``; the other classes share the rest."""
    rest = (1 - confidence) / (len(CLASSES) - 1)
    return {"label": CLASSES[i], "probabilities": {c: confidence if j == i else rest for j, c in enumerate(CLASSES)}}


def test_multiclass_quality_is_macro_f1_and_log_loss_of_the_logged_answers(tmp_path: Path) -> None:
    registry, (version,) = schema_only_registry(tmp_path, MULTICLASS, notes=["a"])
    n = 270  # 90 groups of one answer per class; every third group's true class is the next one
    predicted = [i % 3 for i in range(n)]
    ids = log_answers(registry, "parts", version, [{"speed": 1.0}] * n, [class_answer(p) for p in predicted])
    wrong = [(i // 3) % 3 == 0 for i in range(n)]
    truth = [CLASSES[(p + 1) % 3] if w else CLASSES[p] for p, w in zip(predicted, wrong, strict=True)]
    send_feedback(registry, "parts", list(zip(ids, truth, strict=True)))
    labels, _ = monitor.feedback_since(registry, "parts", None)
    assert labels is not None
    logged = monitor.logged_since(registry, "parts", days=1)
    q = monitor.quality_by_version(logged, labels, Schema.from_dict(MULTICLASS))[version]
    assert q["labelled"] == n
    assert q["accuracy"] == pytest.approx(2 / 3)
    assert q["macro_f1"] == pytest.approx(2 / 3)  # each class: 60 right of 90 answered and of 90 true
    assert q["log_loss"] == pytest.approx((180 * -math.log(0.8) + 90 * -math.log(0.1)) / n)


def regression_logs(registry: Any, version: str, n: int, outside: float) -> list[str]:
    """``n`` answers with an interval of ±1 whose true values lie ±0.5 away, but a share ``outside`` 3 above."""
    values = [10.0 + i % 5 for i in range(n)]
    answers = [{"value": v, "lower": v - 1, "upper": v + 1} for v in values]
    ids = log_answers(registry, "stores", version, [{"price": 2.0}] * n, answers)
    far = round(n * outside)
    truth = [v + 3 if i < far else v + (0.5 if i % 2 else -0.5) for i, v in enumerate(values)]
    send_feedback(registry, "stores", list(zip(ids, truth, strict=True)))
    return ids


def test_regression_quality_is_rmse_mae_and_a_coverage_that_falls_short_is_a_finding(tmp_path: Path) -> None:
    registry, (version,) = schema_only_registry(tmp_path, REGRESSION, notes=["a"], coverage=0.9)
    schema = Schema.from_dict(REGRESSION)
    regression_logs(registry, version, 400, outside=0.2)
    gathered = one_run.gather(registry, "stores", schema, SETTINGS, tmp_path / "work")
    q = one_run.quality_of_versions(registry, "stores", version, gathered.feedback, None, SETTINGS)[version]
    assert q["labelled"] == 400
    assert q["rmse"] == pytest.approx(math.sqrt(0.8 * 0.25 + 0.2 * 9))
    assert q["mae"] == pytest.approx(0.8 * 0.5 + 0.2 * 3)
    assert q["coverage"] == pytest.approx(0.8)
    assert q["declared_coverage"] == 0.9
    assert q["coverage_floor"] == pytest.approx(0.85)  # the 0.05 tolerance is more than 2 standard errors of 400
    (finding,) = monitor.coverage_findings({version: q})
    assert finding.startswith(f"{version}: its 0.9 interval covered 80.0% of 400 labelled answers, below the floor")


@pytest.mark.parametrize(
    ("outside", "labelled", "short"), [(0.12, 400, False), (0.175, 400, True), (0.175, 40, False), (0.3, 40, True)]
)
def test_coverage_is_short_only_beyond_the_tolerance_or_chance(
    tmp_path: Path, outside: float, labelled: int, short: bool
) -> None:
    """Within 0.05 of 0.9 is no finding; with 40 labels, two standard errors (0.095) are the bound instead, so the
    82.5% that is short on 400 labels is not on 40."""
    registry, (version,) = schema_only_registry(tmp_path, REGRESSION, notes=["a"], coverage=0.9)
    regression_logs(registry, version, labelled, outside=outside)
    labels, _ = monitor.feedback_since(registry, "stores", None)
    assert labels is not None
    logged = monitor.logged_since(registry, "stores", days=1)
    quality = monitor.quality_by_version(logged, labels, Schema.from_dict(REGRESSION), declared={version: 0.9})
    assert quality[version]["coverage"] == pytest.approx(1 - outside)
    assert bool(monitor.coverage_findings(quality)) is short


@pytest.mark.parametrize(
    ("schema", "text", "message"),
    [
        (
            MULTICLASS,
            "p1,none\np2,rust\np3,dent\n",
            r"column label holds 1 value\(s\) that are not among the declared classes \['none', 'scratch', 'dent'\] "
            r"\(first: 'rust' for prediction_id 'p2'\); send one of the declared classes",
        ),
        (
            MULTICLASS,
            "p1,none\np2,\n",
            r"column label holds 1 value\(s\) that are missing \(first: '' for prediction_id 'p2'\)",
        ),
        (
            REGRESSION,
            "p1,12.5\np2,many\np3,lots\n",
            r"column label holds 2 value\(s\) that are not numbers \(first: 'many' for",
        ),
        (
            REGRESSION,
            "p1,12.5\np2,NaN\n",
            r"column label holds 1 value\(s\) that are missing, NaN or infinite \(first: 'NaN'",
        ),
        (
            REGRESSION,
            "p1,12.5\np2,\n",
            r"column label holds 1 value\(s\) that are missing, NaN or infinite \(first: ''",
        ),
        (REGRESSION, "p1,-3\n", r"column label holds 1 value\(s\) that are outside the declared range \[0, inf\]"),
    ],
    ids=["class-outside", "class-missing", "strings", "nan", "empty", "below-min"],
)
def test_a_bad_label_in_a_labels_file_is_named_with_its_row(
    tmp_path: Path, schema: dict[str, Any], text: str, message: str
) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("prediction_id,label\n" + text)
    with pytest.raises(DataError, match=rf"^labels file {path}: {message}"):
        monitor.read_labels(str(path), Schema.from_dict(schema))


def test_a_nan_label_in_a_parquet_labels_file_is_refused_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"prediction_id": ["p1", "p2"], "label": [3.5, float("nan")]}).to_parquet(path)
    with pytest.raises(DataError, match=r"1 value\(s\) that are missing, NaN or infinite \(first: nan for "):
        monitor.read_labels(str(path), Schema.from_dict(REGRESSION))
    assert monitor.read_labels(str(path)).shape == (2, 2)  # without a schema: as read


def test_feedback_the_schema_cannot_take_is_left_out_and_counted(tmp_path: Path) -> None:
    registry, (version,) = schema_only_registry(tmp_path, MULTICLASS, notes=["a"])
    ids = log_answers(registry, "parts", version, [{"speed": 1.0}] * 3, [class_answer(i) for i in range(3)])
    send_feedback(registry, "parts", [(ids[0], "none"), (ids[1], "rust"), (ids[2], "dent")])
    gathered = one_run.gather(registry, "parts", Schema.from_dict(MULTICLASS), SETTINGS, tmp_path / "work")
    q = one_run.quality_of_versions(registry, "parts", version, gathered.feedback, None, SETTINGS)[version]
    assert q["labelled"] == 2
    assert q["refused_feedback"] == 1


def shares(counts: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"prediction": [c for c, k in counts.items() for _ in range(k)]})


@pytest.mark.parametrize(
    ("schema", "reference", "calm", "moved", "column"),
    [
        (
            MULTICLASS,
            shares({"none": 300, "scratch": 200, "dent": 100}),
            shares({"none": 150, "scratch": 100, "dent": 50}),
            shares({"none": 50, "scratch": 50, "dent": 200}),
            "prediction",
        ),
        (
            REGRESSION,
            pd.DataFrame({"value": np.random.default_rng(1).normal(10, 2, 600)}),
            pd.DataFrame({"value": np.random.default_rng(2).normal(10, 2, 300)}),
            pd.DataFrame({"value": np.random.default_rng(3).normal(13, 2, 300)}),
            "value",
        ),
    ],
    ids=["class-distribution", "value-distribution"],
)
def test_prediction_drift_is_judged_on_the_tasks_answers(
    schema: dict[str, Any], reference: pd.DataFrame, calm: pd.DataFrame, moved: pd.DataFrame, column: str
) -> None:
    s = Schema.from_dict(schema)
    assert monitor.drift_columns(s) == (([], [column]) if column == "prediction" else ([column], []))
    quiet = monitor.prediction_drift(reference, calm, s)
    assert quiet is not None
    assert not quiet.drifted
    drift = monitor.prediction_drift(reference, moved, s)
    assert drift is not None
    assert drift.drifted
    assert drift.drifted_features == [column]
    assert monitor.prediction_drift(reference, moved.rename(columns={column: "other"}), s) is None  # no answers
