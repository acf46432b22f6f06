"""Write a seeded regression data set to CSV: a store's daily demand (a numeric target and a categorical feature),
as a user's own data would arrive.

uv run python examples/demand/make_csv.py demand.csv
uv run ferry train --data demand.csv --schema examples/demand/schema.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def make_frame(n_rows: int = 2000, *, seed: int = 11) -> pd.DataFrame:
    """Units sold per day: falls with price, rises with temperature and on promotion days, differs by weekday."""
    rng = np.random.default_rng(seed)
    weekday = rng.choice(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], size=n_rows)
    price = rng.uniform(2.0, 8.0, n_rows)
    temperature = rng.normal(18.0, 7.0, n_rows)
    promo = rng.random(n_rows) < 0.2
    weekend = np.isin(weekday, ["sat", "sun"])
    units = 120.0 - 9.0 * price + 1.5 * temperature + 25.0 * promo + 30.0 * weekend + rng.normal(0, 8.0, n_rows)
    return pd.DataFrame(
        {
            "day_id": [f"D{i:05d}" for i in range(n_rows)],
            "weekday": weekday,
            "price": price.round(2),
            "temperature": temperature.round(1),
            "promo": promo.astype(int),
            "units": units.clip(0).round(1),
        }
    )


def write_csv(path: Path, n_rows: int = 2000, *, seed: int = 11) -> Path:
    make_frame(n_rows, seed=seed).to_csv(path, index=False)
    return path


if __name__ == "__main__":
    print(write_csv(Path(sys.argv[1] if len(sys.argv) > 1 else "demand.csv")))
