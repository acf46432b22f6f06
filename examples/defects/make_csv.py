"""Write a seeded multiclass data set to CSV: the defect type of a pressed part (string labels, a categorical
feature), as a user's own data would arrive.

uv run python examples/defects/make_csv.py defects.csv
uv run ferry train --data defects.csv --schema examples/defects/schema.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ("none", "scratch", "dent", "crack")


def make_frame(n_rows: int = 2000, *, seed: int = 7) -> pd.DataFrame:
    """Parts from three press lines; each defect type has its own cause, so a model can tell them apart."""
    rng = np.random.default_rng(seed)
    line = rng.choice(["north", "south", "east"], size=n_rows, p=[0.5, 0.3, 0.2])
    speed = rng.normal(1.0, 0.25, n_rows).clip(0.2, 2.0)
    temperature = rng.normal(180.0, 15.0, n_rows)
    pressure = rng.normal(50.0, 8.0, n_rows)
    logits = np.column_stack(
        [
            np.full(n_rows, 1.0),
            6.0 * (speed - 1.0) + (line == "east") * 1.5,
            0.3 * (pressure - 50.0),
            0.25 * (temperature - 180.0) + (line == "south") * 1.5,
        ]
    )
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    picks = (prob.cumsum(axis=1) > rng.random((n_rows, 1))).argmax(axis=1)
    return pd.DataFrame(
        {
            "part_id": [f"P{i:06d}" for i in range(n_rows)],
            "line": line,
            "speed": speed.round(3),
            "temperature": temperature.round(1),
            "pressure": pressure.round(2),
            "defect": np.asarray(CLASSES, dtype=object)[picks],
        }
    )


def write_csv(path: Path, n_rows: int = 2000, *, seed: int = 7) -> Path:
    make_frame(n_rows, seed=seed).to_csv(path, index=False)
    return path


if __name__ == "__main__":
    print(write_csv(Path(sys.argv[1] if len(sys.argv) > 1 else "defects.csv")))
