"""Scoring one partition: stream it in record batches through ``model.onnx`` and commit its output.

Each record batch is validated against the version's schema (the rules of :func:`ferry.data.validate`, per row, see
:mod:`ferry.batch.rows`); bad rows go to the partition's rejects file with their row id, column, rule and reason,
and good rows are scored with :class:`ferry.scoring.OnnxScorer` on the same encoding as online and edge. The output
is written under a temp name and renamed; the manifest record written last is the partition's commit point.
With ``explain``, each good row is also explained (:mod:`ferry.batch.explanations`) and its explanation columns
follow the usual ones; the manifest record says with which options.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ferry import data as fdata
from ferry.batch.explanations import Explaining
from ferry.batch.model import LoadedModel
from ferry.batch.output import OutputDir
from ferry.batch.overlap import WriteBehind, prefetch
from ferry.batch.partitions import Partition, schema_batches
from ferry.batch.rows import check_batch
from ferry.batch.sample import Reservoir, keep_sample, seed_of
from ferry.errors import DataValidationError
from ferry.schema import Schema
from ferry.scoring import OnnxScorer, ValueScores

__all__ = ["REJECT_SCHEMA", "PartitionResult", "score_partition"]


REJECT_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("column", pa.string()),
        ("rule", pa.string()),
        ("reason", pa.string()),
    ]
)


@dataclass(frozen=True)
class PartitionResult:
    """What scoring one partition did. Plain data, so it travels between processes and into artifacts."""

    partition: str
    input: str
    rows: int
    scored: int
    rejected: int
    seconds: float
    output: str
    rejects: str | None
    version: str
    model: str
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Prepared:
    """One record batch, validated: its row count, the ids and ONNX inputs of good rows, and a rejects table."""

    rows: int
    ids: pa.Array | pa.ChunkedArray
    inputs: dict[str, np.ndarray[Any, Any]] | None
    rejects: pa.Table | None


def _prepare(
    part: Partition,
    schema: Schema,
    batch_rows: int,
    storage_options: dict[str, Any] | None,
    reservoir: Reservoir | None = None,
) -> Generator[_Prepared, None, None]:
    offset = 0
    for batch in schema_batches(part, schema, batch_rows, storage_options):
        n = batch.num_rows
        checked = check_batch(batch, schema)
        if reservoir is not None:
            reservoir.add(checked)
        if schema.id is not None and schema.id in batch.schema.names:
            ids = batch.column(schema.id)
        else:
            ids = pa.array(np.arange(offset, offset + n, dtype=np.int64))
        rejects = None
        if checked.rejects:
            bad = checked.rejects
            positions = np.array([b[0] for b in bad], dtype=np.int64)
            shown = [fdata.show_id(x) for x in ids.take(positions).to_pylist()]
            columns = {
                "row": pa.array(positions + offset),
                "id": pa.array(shown, pa.string()),
                "column": [b[1] for b in bad],
                "rule": [b[2] for b in bad],
                "reason": [b[3] for b in bad],
            }
            rejects = pa.table(columns, schema=REJECT_SCHEMA)
        all_good = not checked.rejects
        yield _Prepared(n, ids if all_good else ids.filter(pa.array(checked.good)), checked.inputs, rejects)
        offset += n


def _output_schema(id_field: pa.Field, schema: Schema, explain: Explaining | None = None) -> pa.Schema:
    """The output's columns per task (:mod:`ferry.scoring`'s contract): a classifier's ``prediction`` (the class
    index into ``target_classes``) and one ``prob_<class>`` column per class; a regressor's ``value``, ``lower``
    and ``upper``; then, with ``explain``, the explanation columns."""
    if schema.kind == "regression":
        answer = [pa.field(name, pa.float32()) for name in ("value", "lower", "upper")]
    else:
        answer = [pa.field("prediction", pa.int64())]
        answer += [pa.field(f"prob_{c}", pa.float32()) for c in schema.target_classes]
    return pa.schema(
        [
            id_field,
            *answer,
            pa.field("model_version", pa.string()),
            pa.field("scored_at", pa.timestamp("us", tz="UTC")),
            *([] if explain is None else explain.fields(schema)),
        ]
    )


def _answer_columns(scorer: OnnxScorer, inputs: dict[str, np.ndarray]) -> list[Any]:
    """The task's answer as the output's columns, in :func:`_output_schema` order."""
    found = scorer.answer(inputs)
    if isinstance(found, ValueScores):
        return [pa.array(found.values), pa.array(found.lower), pa.array(found.upper)]
    columns: list[Any] = [pa.array(found.labels.astype(np.int64, copy=False))]
    return columns + [pa.array(found.probabilities[:, j]) for j in range(found.probabilities.shape[1])]


def score_partition(
    part: Partition,
    out: OutputDir,
    model: LoadedModel,
    *,
    batch_rows: int = 65_536,
    storage_options: dict[str, Any] | None = None,
    on_rows: Callable[[int], None] | None = None,
    threaded: bool = True,
    sample_rows: int | None = 0,
    explain: Explaining | None = None,
) -> PartitionResult:
    """Score one partition into ``out`` and record it in the manifest; nothing is left half-written on failure.

    ``on_rows`` is called with the number of input rows after each record batch (for progress bars). With
    ``threaded``, the next record batch is read and validated in a second thread, and the previous one is written
    in a third, while onnxruntime scores this one. With ``sample_rows``, a random sample of that many good rows
    (seeded by the partition key) is kept for the run's drift check; with 0, a stale one is removed; with None, the
    sample is left alone (a drift process draws it with :func:`sample_partition` meanwhile). With ``explain``, the
    good rows' explanation columns follow the usual ones.
    """
    schema, v = model.schema, model.version
    started = time.perf_counter()
    scored_at = pa.scalar(datetime.now(UTC), type=pa.timestamp("us", tz="UTC"))
    tmp_scores, tmp_rejects = out.tmp(part.key, "scores"), out.tmp(part.key, "rejects")
    id_name = schema.id or "row"
    rows = scored = rejected = 0
    writer: pq.ParquetWriter | None = None
    reject_writer: pq.ParquetWriter | None = None
    handles: list[Any] = []
    reservoir = Reservoir(sample_rows, seed=seed_of(part.key)) if sample_rows else None
    prepared = _prepare(part, schema, batch_rows, storage_options, reservoir)
    source: Generator[_Prepared, None, None] = prefetch(prepared, depth=2) if threaded else prepared
    writes = WriteBehind(depth=2, threaded=threaded)
    try:
        for b in source:
            if b.rejects is not None:
                if reject_writer is None:
                    handles.append(out.fs.open(tmp_rejects, "wb"))
                    reject_writer = pq.ParquetWriter(handles[-1], REJECT_SCHEMA)
                writes.submit(reject_writer.write_table, b.rejects)
            if b.inputs is not None:
                answer = _answer_columns(model.scorer, b.inputs)
                k = len(b.ids)
                if writer is None:
                    handles.append(out.fs.open(tmp_scores, "wb"))
                    out_schema = _output_schema(pa.field(id_name, b.ids.type), schema, explain)
                    writer = pq.ParquetWriter(handles[-1], out_schema)
                columns: list[Any] = [b.ids, *answer, pa.repeat(pa.scalar(v.id), k), pa.repeat(scored_at, k)]
                if explain is not None:
                    columns += explain.columns(b.inputs, schema)
                writes.submit(writer.write_table, pa.Table.from_arrays(columns, schema=writer.schema))
                scored += k
            rows += b.rows
            rejected += 0 if b.rejects is None else b.rejects.num_rows
            if on_rows is not None:
                on_rows(b.rows)
        writes.drain()
        writes.close()
        for w in (writer, reject_writer):
            if w is not None:
                w.close()
        for h in handles:
            h.close()
        if rows == 0:
            raise DataValidationError("(all)", "rows", f"partition {part.url} has no rows; remove it or fill it")
        if writer is None:  # every row was rejected: still write an empty, typed output
            empty = _output_schema(pa.field(id_name, pa.string()), schema, explain).empty_table()
            with out.fs.open(tmp_scores, "wb") as fh:
                pq.write_table(empty, fh)
        if sample_rows is not None:  # None: another process draws this partition's sample
            keep_sample(out, part.key, None if reservoir is None else reservoir.sample())
        out.publish(tmp_scores, out.scores(part.key))
        if reject_writer is not None:
            out.publish(tmp_rejects, out.rejects(part.key))
        else:
            out.discard(out.rejects(part.key))  # a stale one from an earlier, different attempt
    except BaseException:
        source.close()  # stops the prefetch thread, which closes the reader
        writes.close()  # waits for a write in progress before its file is closed
        for w in (writer, reject_writer):
            if w is not None:  # closed here, not later by the garbage collector on a closed file
                with contextlib.suppress(Exception):
                    w.close()
        for h in handles:
            h.close()
        out.discard(tmp_scores, tmp_rejects)
        raise
    result = PartitionResult(
        partition=part.key,
        input=part.url,
        rows=rows,
        scored=scored,
        rejected=rejected,
        seconds=round(time.perf_counter() - started, 4),
        output=out.location("scores", f"{part.key}.parquet"),
        rejects=out.location("rejects", f"{part.key}.parquet") if rejected else None,
        version=v.id,
        model=v.model,
    )
    explained = None if explain is None else explain.options.to_dict()
    record = {**result.to_dict(), "input_size": part.size, "finished_at": _now(), "explain": explained}
    out.write_manifest(part.key, record)
    return result


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
