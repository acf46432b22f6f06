"""The scan of the encryption tests: which ids and values of data rows any file under a directory holds in clear, in
the forms Parquet, CSV, JSON and HTML hold them (text, and float64 bytes)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ferry.storage import sealed

_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def new_key_file(path: Path, *keys: str) -> Path:
    """A key file holding ``keys`` (one fresh key when none is given), mode 0600."""
    path.write_text("".join(f"{k}\n" for k in (keys or (sealed.new_key_hex(),))))
    path.chmod(0o600)
    return path


@dataclass
class Needles:
    """What must never be found in clear: ids as text (found by ``id_pattern``), values as text in every form a
    writer uses (repr, JSON, fixed and general formats) and as float64 bytes (Parquet's plain encoding)."""

    ids: set[bytes] = field(default_factory=set)
    id_pattern: re.Pattern[bytes] = re.compile(rb"^$")
    texts: set[bytes] = field(default_factory=set)
    doubles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="<u8"))

    def __len__(self) -> int:
        return len(self.ids) + len(self.texts) + len(self.doubles)

    def found_in(self, data: bytes) -> list[str]:
        hits = [h.decode() for h in set(self.id_pattern.findall(data)) & self.ids]
        # numbers shorter than 6 characters would turn up by chance in megabytes of ciphertext
        hits += [h.decode() for h in {m for m in _NUMBER.findall(data) if len(m) >= 6} & self.texts]
        for offset in range(8):
            usable = (len(data) - offset) // 8
            if usable > 0:
                words = np.frombuffer(data, dtype="<u8", count=usable, offset=offset)
                hits += [f"float64 {w:#x}" for w in np.intersect1d(words, self.doubles)[:3]]
        return hits


def needles(frame: pd.DataFrame, id_column: str, value_columns: Iterable[str], id_pattern: bytes) -> Needles:
    """The needles of ``frame``: its ids (matched by ``id_pattern``) and the values of ``value_columns``."""
    texts: set[bytes] = set()
    doubles = []
    for column in value_columns:
        for value in frame[column].dropna().astype(float):
            forms = {repr(value), json.dumps(value), f"{value:.2f}", f"{value:g}", str(round(value, 2))}
            texts |= {f.encode() for f in forms if len(f) >= 6}
            doubles.append(np.float64(value).view("<u8"))
    return Needles(
        ids={str(v).encode() for v in frame[id_column]},
        id_pattern=re.compile(id_pattern),
        texts=texts,
        doubles=np.unique(np.asarray(doubles, dtype="<u8")),
    )


def leaks(roots: Iterable[Path], wanted: Needles) -> dict[str, list[str]]:
    """Each file under ``roots`` that holds a needle in clear (in its bytes, or in a Parquet file's cells), with at
    most three of the needles it holds."""
    out: dict[str, list[str]] = {}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            hits = wanted.found_in(data)
            if data[:4] == b"PAR1":
                hits += wanted.found_in(pq.read_table(io.BytesIO(data)).to_pandas().to_csv(index=False).encode())
            if hits:
                out[str(path)] = sorted(set(hits))[:3]
    return out


def clear_files(roots: Iterable[Path]) -> list[str]:
    """Paths (relative to their root) of the files under ``roots`` stored in clear (no envelope, no sealed lines)."""
    names = set()
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file()):
            if path.read_bytes()[: len(sealed.MAGIC)] != sealed.MAGIC:
                names.add(str(path.relative_to(root)))
    return sorted(names)
