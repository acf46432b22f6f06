"""The drift sample of a batch run: a seeded reservoir of each partition's good rows, kept beside the output.

Scoring fills a :class:`Reservoir` while it streams a partition; a partition scored without one gets the same rows
drawn from its input by :func:`sample_partition` (the seed is the partition's key). :func:`keep_sample` writes the
sample to the output's ``_drift/`` folder, where the run's drift check reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ferry.batch.output import OutputDir
from ferry.batch.partitions import Partition, schema_batches
from ferry.batch.rows import Checked, FloatArray, check_batch
from ferry.schema import Schema

__all__ = ["Reservoir", "keep_sample", "sample_partition", "seed_of"]


def sample_partition(
    part: Partition,
    out: OutputDir,
    schema: Schema,
    sample_rows: int,
    *,
    batch_rows: int = 65_536,
    storage_options: dict[str, Any] | None = None,
) -> int:
    """Draw the partition's drift sample from its input, without scoring it, into ``out``; returns its rows.

    The same rows as :func:`score_partition` keeps with ``sample_rows`` (:class:`Reservoir`), but
    only rows that could enter the sample are checked. A partition without a good row leaves no sample.
    """
    reservoir = Reservoir(sample_rows, seed=seed_of(part.key))
    for batch in schema_batches(part, schema, batch_rows, storage_options):
        reservoir.add_unchecked(batch, schema)
    return keep_sample(out, part.key, reservoir.sample())


def keep_sample(out: OutputDir, key: str, sample: pd.DataFrame | None) -> int:
    """Publish a partition's drift sample (written under a temp name, then renamed), or remove a stale one."""
    if sample is None:
        out.discard(out.drift_sample(key))
        return 0
    tmp = out.tmp(key, "sample")
    try:
        with out.fs.open(tmp, "wb") as fh:
            pq.write_table(pa.Table.from_pandas(sample, preserve_index=False), fh)
        out.publish(tmp, out.drift_sample(key))
    except BaseException:
        out.discard(tmp)
        raise
    return len(sample)


def seed_of(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


class Reservoir:
    """A uniform random sample of at most ``k`` good rows of a stream of record batches (seeded: same input, same
    sample). Every row of the stream, good or bad, draws a random key in turn; the good rows with the ``k`` smallest
    keys are kept (bottom-k sampling), so the sample covers the whole partition, not only its first rows, and
    memory stays at ``k`` rows.

    Rows are fed either checked (:meth:`add`, while scoring) or unchecked (:meth:`add_unchecked`, which checks
    only the rows whose key could still enter the sample). The rules are row by row and the keys follow the row's
    position in the stream, so both ways keep the same rows, whatever the record batch size.
    """

    def __init__(self, k: int, *, seed: int) -> None:
        self.k = k
        self._rng = np.random.default_rng(seed)
        self._keys = np.zeros(0, dtype=np.float64)
        self._frame: pd.DataFrame | None = None

    def add(self, checked: Checked) -> None:
        keys = self._rng.random(checked.rows)
        if self.k <= 0 or checked.typed is None:
            return
        positions = np.flatnonzero(checked.good)
        typed = checked.typed
        self._merge(keys[positions], lambda kept: typed.take(positions[kept]))

    def add_unchecked(self, batch: pa.RecordBatch, schema: Schema) -> None:
        """Add a record batch that was not checked: check only its rows that could enter the sample, fewest first."""
        keys = self._rng.random(batch.num_rows)
        if self.k <= 0:
            return
        bound = np.partition(self._keys, self.k - 1)[self.k - 1] if len(self._keys) >= self.k else np.inf
        candidates = np.flatnonzero(keys < bound)
        candidates = candidates[np.argsort(keys[candidates], kind="stable")]
        found: list[tuple[npt.NDArray[np.intp], pd.DataFrame]] = []
        have = 0
        for start in range(0, len(candidates), self.k):  # the smallest keys first, until k of them are good
            chunk = np.sort(candidates[start : start + self.k])
            checked = check_batch(batch.take(pa.array(chunk)), schema)
            if checked.typed is None:
                if len(set(batch.schema.names) & set(schema.feature_names)) < len(schema.feature_names):
                    return  # a feature column is missing: no row of this batch is good
                continue
            good = np.flatnonzero(checked.good)
            found.append((chunk[good], checked.typed.take(good)))
            have += len(good)
            if have >= self.k:
                break
        if not found:
            return
        positions = np.concatenate([f[0] for f in found])
        frame = pd.concat([f[1] for f in found], ignore_index=True)
        order = np.argsort(positions, kind="stable")  # back into stream order
        frame = frame.iloc[order].reset_index(drop=True)
        self._merge(keys[positions[order]], lambda kept: frame.iloc[kept].reset_index(drop=True))

    def _merge(self, keys: FloatArray, take: Callable[[npt.NDArray[np.intp]], pd.DataFrame]) -> None:
        """Keep the ``k`` smallest keys of the kept rows and these new ones (``take`` gives the features of the new
        rows at those indices of ``keys``; the kept rows stay in stream order, the new ones after them)."""
        have = len(self._keys)
        if have + len(keys) <= self.k:
            keep_old = np.arange(have)
            keep_new = np.arange(len(keys))
        else:
            every = np.concatenate([self._keys, keys])
            keep = np.sort(np.argpartition(every, self.k - 1)[: self.k])
            keep_old, keep_new = keep[keep < have], keep[keep >= have] - have
        if len(keep_new) == 0:  # the k kept rows stay
            return
        new = take(keep_new)
        old = None if self._frame is None else self._frame.iloc[keep_old]
        self._frame = new if old is None else pd.concat([old, new], ignore_index=True)
        self._keys = np.concatenate([self._keys[keep_old], keys[keep_new]])

    def sample(self) -> pd.DataFrame | None:
        """The sampled rows (features only), or None when no good row was seen."""
        return self._frame
