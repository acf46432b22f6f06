"""What the batch tests share: demo partitions on disk, their scores read back, a second version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ferry import demo_data
from ferry.registry import Registry


def source_table(champion: dict[str, str]) -> pa.Table:
    return pq.read_table(champion["data"])


def write_partitions(champion: dict[str, str], where: Path, n: int = 3, *, csv: int = 1) -> list[Path]:
    """The champion's training data cut into ``n`` Parquet partitions plus ``csv`` CSV ones, in subdirectories."""
    table = source_table(champion)
    cuts = np.linspace(0, table.num_rows, n + csv + 1).astype(int)
    paths = []
    for i in range(n + csv):
        piece = table.slice(cuts[i], cuts[i + 1] - cuts[i])
        sub = where / f"day={i:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        if i < n:
            path = sub / "part.parquet"
            pq.write_table(piece, path)
        else:
            path = sub / "part.csv"
            piece.to_pandas().to_csv(path, index=False)
        paths.append(path)
    return paths


def read_scores(out: Path) -> pd.DataFrame:
    return pq.read_table(out / "scores").to_pandas()


def without_time(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["scored_at"]).sort_values("customer_id").reset_index(drop=True)


def second_version(registry: Registry, first: str, tmp_path: Path) -> str:
    """Register the same model under a different lineage, so it gets its own id (no training needed)."""
    v = registry.get(first)
    files = {}
    for name in ("model.onnx", "schema.json", "lineage.json"):
        data = registry.read_bytes(v, name)
        if name == "lineage.json":
            data = json.dumps({**json.loads(data), "note": "second"}).encode()
        (tmp_path / name).write_bytes(data)
        files[name] = tmp_path / name
    return registry.register(v.model, files, {"gate": {"passed": True}}).id


def demo_partitions(where: Path, *, drift: float, parts: int = 2, rows: int = 3000) -> Path:
    where.mkdir(parents=True)
    for i in range(parts):
        frame = demo_data.make_churn(rows, seed=500 + i, drift=drift)
        frame["customer_id"] = [f"D{i}-{j:06d}" for j in range(rows)]
        frame.to_parquet(where / f"part-{i}.parquet", index=False)
    return where
