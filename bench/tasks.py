"""The data the bench scripts train on and score, per task (``--task``): the demo churn data (binary, the baseline
figures), a 10-class model (multiclass, string labels, a categorical feature) and the demand example (regression,
with its conformal interval). Not a script: ``retrain.py`` and ``batch.py`` import it.
"""

from __future__ import annotations

import runpy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TASKS = ("binary", "multiclass", "regression")
CLASSES = [f"k{i}" for i in range(10)]
SITES = ["a", "b", "c", "d", "e"]

_MULTICLASS_SCHEMA = f"""\
name: parts10
task: multiclass
target: kind
target_classes: [{", ".join(CLASSES)}]
id: item_id
features:
- {{name: site, type: categorical, levels: [{", ".join(SITES)}]}}
""" + "".join(f"- {{name: x{i}, type: numeric}}\n" for i in range(6))


@dataclass(frozen=True)
class TaskData:
    """One task's bench data: the model's name, its id column, its schema (YAML) and ``make(rows, seed)``."""

    task: str
    model: str
    id: str
    schema_yaml: str
    make: Callable[[int, int], pd.DataFrame]

    def write(self, root: Path, rows: int, seed: int) -> tuple[Path, Path]:
        """The schema file and ``rows`` rows of data as Parquet, under ``root``."""
        root.mkdir(parents=True, exist_ok=True)
        schema = root / f"{self.model}.yaml"
        schema.write_text(self.schema_yaml)
        data = root / f"{self.model}-{rows}-{seed}.parquet"
        self.make(rows, seed).to_parquet(data, index=False)
        return schema, data


def _ten_classes(rows: int, seed: int) -> pd.DataFrame:
    """Ten classes drawn from a softmax over six numeric features and a site; every class is common."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    site = rng.choice(SITES, size=rows)
    weights = np.random.default_rng(99).normal(size=(6, len(CLASSES))) * 1.5  # the same classes for every seed
    logits = x @ weights + (site[:, None] == np.array(SITES * 2)[None, :]) * 1.0
    picks = (logits + rng.gumbel(size=logits.shape)).argmax(axis=1)
    frame = pd.DataFrame({"item_id": [f"I{seed:04d}{i:09d}" for i in range(rows)], "site": site})
    for i in range(6):
        frame[f"x{i}"] = x[:, i].round(4)
    frame["kind"] = np.asarray(CLASSES, dtype=object)[picks]
    return frame


def _example_frames(name: str) -> Callable[..., pd.DataFrame]:
    """The ``make_frame`` of ``examples/<name>/make_csv.py``."""
    path = Path(__file__).resolve().parents[1] / "examples" / name / "make_csv.py"
    make: Callable[..., pd.DataFrame] = runpy.run_path(str(path))["make_frame"]
    return make


def task_data(task: str) -> TaskData:
    """The bench data of ``task`` (one of :data:`TASKS`)."""
    from ferry import demo_data

    if task == "binary":
        return TaskData(
            "binary",
            "churn",
            "customer_id",
            demo_data.churn_schema().dump_yaml(),
            lambda rows, seed: demo_data.make_churn(rows, seed=seed),
        )
    if task == "multiclass":
        return TaskData("multiclass", "parts10", "item_id", _MULTICLASS_SCHEMA, _ten_classes)
    demand = _example_frames("demand")
    schema = (Path(__file__).resolve().parents[1] / "examples" / "demand" / "schema.yaml").read_text()
    return TaskData("regression", "demand", "day_id", schema, lambda rows, seed: demand(rows, seed=seed))
