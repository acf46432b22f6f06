"""Write scikit-learn's bundled breast-cancer data set to a CSV file, as a user's own data would arrive.

uv run python examples/breast_cancer/make_csv.py breast_cancer.csv
uv run ferry train --data breast_cancer.csv --schema examples/breast_cancer/schema.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

from sklearn.datasets import load_breast_cancer


def write_csv(path: Path) -> Path:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame.to_csv(path, index=False)
    return path


if __name__ == "__main__":
    print(write_csv(Path(sys.argv[1] if len(sys.argv) > 1 else "breast_cancer.csv")))
