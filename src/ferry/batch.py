"""Batch scoring: stream partitions through ``model.onnx``, write partitioned Parquet, resume after a crash.

The plain functions here do all the work; ``flows/batch_score.py`` and ``ferry score`` only wire them up:

- :func:`resolve_version` picks the model version: a pinned id, else the ``batch`` channel, else
  ``online/champion``.
- :func:`plan` finds the input partitions (see :mod:`ferry.batch_io`), prepares the output directory and says which
  partitions a previous run already finished (they are skipped).
- :func:`score_partition` streams one partition in record batches: each batch is validated against the version's
  schema (the rules of :func:`ferry.data.validate`), bad rows go to the partition's rejects file with their row id,
  column, rule and reason, and good rows are scored with :class:`ferry.scoring.OnnxScorer` on
  :func:`ferry.data.to_onnx_inputs`, the same path as online and edge. The output is written under a temp name and
  renamed; the manifest record written last is the partition's commit point.
- :func:`score` runs every pending partition in this process, one after another; a partition that fails is reported
  and the others still score. The run's input-drift check (:mod:`ferry.batch_drift`) runs in a process started
  with the run: it draws the partitions' samples from the input and checks them while the partitions score.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ferry import data as fdata
from ferry.batch_drift import check_drift, drift_process, warm_drift
from ferry.batch_io import (
    OutputDir,
    Partition,
    WriteBehind,
    count_rows,
    discover_partitions,
    iter_batches,
    output_lock,
    prefetch,
)
from ferry.batch_rows import Reservoir, check_batch, row_problems
from ferry.errors import DataValidationError, FerryError, RegistryError
from ferry.registry import ModelVersion, Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer

log = logging.getLogger("ferry.batch")

__all__ = [
    "BatchSettings",
    "LoadedModel",
    "PartitionResult",
    "PartitionsFailed",
    "Plan",
    "RowProgress",
    "check_drift",
    "keep_sample",
    "load_model",
    "note_run",
    "plan",
    "resolve_version",
    "row_problems",
    "sample_partition",
    "score",
    "score_partition",
    "warm_drift",
]

REJECT_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("column", pa.string()),
        ("rule", pa.string()),
        ("reason", pa.string()),
    ]
)


class BatchSettings(BaseSettings):
    """How batch scoring picks its model and sizes its work."""

    model_config = SettingsConfigDict(env_prefix="FERRY_BATCH_", extra="ignore")

    channel: str = Field(default="batch", min_length=1, description="Channel whose version batch scoring uses.")
    fallback_channel: str = Field(
        default="online/champion", min_length=1, description="Channel used when `channel` points nowhere."
    )
    batch_rows: int = Field(
        default=65_536, ge=1, le=4_000_000, description="Rows per record batch: bounds memory per partition."
    )
    threads: int = Field(
        default=1, ge=1, le=64, description="onnxruntime threads per scoring process (raise only on idle cores)."
    )
    prefetch: bool = Field(
        default=True,
        description="Read and validate the next record batch in a second thread while onnxruntime scores this one.",
    )
    progress_s: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds between progress lines in the flow's logs."
    )
    drift: bool = Field(default=True, description="Check input drift against the version's reference (Evidently).")
    drift_sample_rows: int = Field(
        default=2_000, ge=100, le=1_000_000, description="Rows sampled at random from each partition for drift."
    )
    drift_max_rows: int = Field(
        default=20_000, ge=100, le=5_000_000, description="At most this many sampled rows go into one drift check."
    )
    drift_share: float = Field(
        default=0.25, gt=0.0, le=1.0, description="The input has drifted when at least this share of features has."
    )
    drift_timeout_s: float = Field(default=300.0, gt=0, le=3600, description="Time limit of the drift check.")
    drift_process_mb: float = Field(
        default=16.0,
        ge=0,
        le=1_000_000,
        description=(
            "Sample the input and check drift in a second process started with the run, while the partitions "
            "score, when at least this many MB of input are pending and Evidently is not yet imported here; else in "
            "this process after scoring. 0: always in a second process."
        ),
    )


class PartitionsFailed(FerryError, RuntimeError):
    """Some partitions could not be scored; the others were. ``failures`` maps partition key to the error text."""

    def __init__(self, failures: dict[str, str], finished: int, summary: RunSummary | None = None) -> None:
        self.failures = dict(failures)
        self.summary = summary
        lines = "; ".join(f"{k}: {v}" for k, v in sorted(failures.items()))
        super().__init__(
            f"{len(failures)} partition(s) failed and {finished} finished: {lines}. Fix or remove the failing "
            "input and run the same command again: finished partitions are skipped"
        )


# ---------------------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion
    schema: Schema
    scorer: OnnxScorer = field(repr=False)


def resolve_version(
    registry: Registry, *, version: str | None = None, model: str | None = None, settings: BatchSettings | None = None
) -> ModelVersion:
    """The version to score with: ``version`` when given, else ``settings.channel``, else its fallback channel."""
    if version:
        return registry.get(version, model=model)
    s = settings or BatchSettings()
    if model is None:
        names = registry.models()
        if len(names) != 1:
            have = f"it holds {names}" if names else "it holds no models yet; train one first"
            raise RegistryError(f"registry {registry.url} needs a model name to pick a version: {have}")
        model = names[0]
    for channel in (s.channel, s.fallback_channel):
        vid = registry.channel(model, channel)
        if vid is not None:
            return registry.get(vid, model=model)
    raise RegistryError(
        f"model {model!r} has no version on channel {s.channel!r} nor on {s.fallback_channel!r}; promote one "
        f"(ferry promote VERSION --channel {s.channel}) or pass a version"
    )


@functools.lru_cache(maxsize=4)
def _load_cached(registry_url: str, model: str, version_id: str, threads: int) -> LoadedModel:
    registry = Registry(registry_url)
    v = registry.get(version_id, model=model)
    schema = registry.schema(v)
    return LoadedModel(v, schema, OnnxScorer(registry.read_bytes(v, "model.onnx"), intra_op_threads=threads))


def load_model(registry_url: str, model: str, version_id: str, *, threads: int = 1) -> LoadedModel:
    """The version's schema and an onnxruntime session over its ``model.onnx`` (cached per process)."""
    return _load_cached(registry_url, model, version_id, threads)


# -------------------------------------------------------------------------------------------------------- scoring


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


def _batches(
    part: Partition, schema: Schema, batch_rows: int, storage_options: dict[str, Any] | None
) -> Generator[pa.RecordBatch, None, None]:
    """The partition's record batches, with the columns scoring reads (text features dictionary-encoded)."""
    wanted = [c for c in (schema.id, schema.timestamp) if c is not None] + list(schema.feature_names)
    yield from iter_batches(
        part,
        batch_rows=batch_rows,
        columns=wanted,
        dictionary=list(schema.feature_names),
        storage_options=storage_options,
    )


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

    The same rows as :func:`score_partition` keeps with ``sample_rows`` (:class:`ferry.batch_rows.Reservoir`), but
    only rows that could enter the sample are checked. A partition without a good row leaves no sample.
    """
    reservoir = Reservoir(sample_rows, seed=_seed(part.key))
    for batch in _batches(part, schema, batch_rows, storage_options):
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


def _prepare(
    part: Partition,
    schema: Schema,
    batch_rows: int,
    storage_options: dict[str, Any] | None,
    reservoir: Reservoir | None = None,
) -> Generator[_Prepared, None, None]:
    offset = 0
    for batch in _batches(part, schema, batch_rows, storage_options):
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


def _output_schema(id_field: pa.Field, schema: Schema) -> pa.Schema:
    probs = [pa.field(f"prob_{c}", pa.float32()) for c in schema.target_classes]
    return pa.schema(
        [
            id_field,
            pa.field("prediction", pa.int64()),
            *probs,
            pa.field("model_version", pa.string()),
            pa.field("scored_at", pa.timestamp("us", tz="UTC")),
        ]
    )


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
) -> PartitionResult:
    """Score one partition into ``out`` and record it in the manifest; nothing is left half-written on failure.

    ``on_rows`` is called with the number of input rows after each record batch (for progress bars). With
    ``threaded``, the next record batch is read and validated in a second thread, and the previous one is written
    in a third, while onnxruntime scores this one. With ``sample_rows``, a random sample of that many good rows
    (seeded by the partition key) is kept for the run's drift check; with 0, a stale one is removed; with None, the
    sample is left alone (a drift process draws it with :func:`sample_partition` meanwhile).
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
    reservoir = Reservoir(sample_rows, seed=_seed(part.key)) if sample_rows else None
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
                scores = model.scorer.score(b.inputs)
                k = len(b.ids)
                if writer is None:
                    handles.append(out.fs.open(tmp_scores, "wb"))
                    writer = pq.ParquetWriter(handles[-1], _output_schema(pa.field(id_name, b.ids.type), schema))
                columns: list[Any] = [b.ids, pa.array(scores.labels.astype(np.int64, copy=False))]
                columns += [pa.array(scores.probabilities[:, j]) for j in range(scores.probabilities.shape[1])]
                columns += [pa.repeat(pa.scalar(v.id), k), pa.repeat(scored_at, k)]
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
            empty = _output_schema(pa.field(id_name, pa.string()), schema).empty_table()
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
    out.write_manifest(part.key, {**result.to_dict(), "input_size": part.size, "finished_at": _now()})
    return result


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# ----------------------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Plan:
    """What a run will do: every partition, which are already finished, and with which version."""

    input: str
    output: str
    registry_url: str
    model: str
    version: str
    partitions: list[Partition]
    finished: dict[str, PartitionResult]

    @property
    def pending(self) -> list[Partition]:
        return [p for p in self.partitions if p.key not in self.finished]


def plan(
    input_url: str,
    output_url: str,
    registry: Registry,
    *,
    version: str | None = None,
    model: str | None = None,
    settings: BatchSettings | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """Resolve the version, list partitions, prepare the output and read what earlier runs finished.

    Refuses (RegistryError) to add to an output that another model version already wrote to, so one output never
    mixes versions.
    """
    v = resolve_version(registry, version=version, model=model, settings=settings)
    parts = discover_partitions(input_url, storage_options=storage_options)
    out = OutputDir(output_url, storage_options=storage_options)
    out.prepare()
    out.clear_tmp()
    records = out.read_manifest()
    others = sorted({str(r["version"]) for r in records.values()} - {v.id})
    if others:
        raise RegistryError(
            f"output {output_url} already holds partitions scored by version(s) {', '.join(others)}, not {v.id}; "
            "write to a new output, or pin that version"
        )
    keys = {p.key for p in parts}
    finished = {
        k: PartitionResult(**{**{f: r[f] for f in _RESULT_FIELDS if f in r}, "skipped": True})
        for k, r in records.items()
        if k in keys and out.fs.exists(out.scores(k))
    }
    return Plan(input_url, output_url, registry.url, v.model, v.id, parts, finished)


_RESULT_FIELDS = tuple(PartitionResult.__dataclass_fields__)


def run_partition(
    part: dict[str, Any],
    output_url: str,
    registry_url: str,
    model: str,
    version: str,
    *,
    settings: BatchSettings | None = None,
    storage_options: dict[str, Any] | None = None,
    on_rows: Callable[[int], None] | None = None,
    drift_apart: bool = False,
) -> dict[str, Any]:
    """:func:`score_partition` from references only (what a task in another process or on Dask receives).

    With ``drift_apart``, the partition's drift sample is left to the run's drift process (it draws it meanwhile).
    """
    s = settings or BatchSettings()
    loaded = load_model(registry_url, model, version, threads=s.threads)
    out = OutputDir(output_url, storage_options=storage_options)
    return score_partition(
        Partition.from_dict(part),
        out,
        loaded,
        batch_rows=s.batch_rows,
        storage_options=storage_options,
        on_rows=on_rows,
        threaded=s.prefetch,
        sample_rows=None if drift_apart else s.drift_sample_rows if s.drift else 0,
    ).to_dict()


@dataclass
class RunSummary:
    """Totals of a run, over scored and skipped partitions."""

    model: str
    version: str
    output: str
    partitions: int
    skipped: int
    rows: int
    scored: int
    rejected: int
    seconds: float
    failures: dict[str, str]
    results: list[dict[str, Any]]
    drift: dict[str, Any] | None = None

    @property
    def rows_per_s(self) -> float:
        fresh = sum(r["rows"] for r in self.results if not r["skipped"])
        return fresh / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": self.rows_per_s}


def summarise(p: Plan, results: list[dict[str, Any]], failures: dict[str, str], seconds: float) -> RunSummary:
    every = [r.to_dict() for r in p.finished.values()] + results
    return RunSummary(
        model=p.model,
        version=p.version,
        output=p.output,
        partitions=len(p.partitions),
        skipped=len(p.finished),
        rows=sum(r["rows"] for r in every),
        scored=sum(r["scored"] for r in every),
        rejected=sum(r["rejected"] for r in every),
        seconds=round(seconds, 4),
        failures=failures,
        results=sorted(every, key=lambda r: str(r["partition"])),
    )


def score(
    input_url: str,
    output_url: str,
    registry: Registry,
    *,
    version: str | None = None,
    model: str | None = None,
    settings: BatchSettings | None = None,
    storage_options: dict[str, Any] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> RunSummary:
    """Score every pending partition of ``input_url`` into ``output_url`` in this process.

    A partition that fails (corrupt file, unreadable storage) does not stop the others; when any failed, the
    summary is complete for the rest and PartitionsFailed is raised at the end, naming each failure. The output's
    lock is held for the whole run: a second run on the same output gets OutputLocked at once, naming the holder.
    """
    s = settings or BatchSettings()
    with output_lock(OutputDir(output_url, storage_options=storage_options)):
        return _score(input_url, output_url, registry, version, model, s, storage_options, on_plan, on_rows)


def _score(
    input_url: str,
    output_url: str,
    registry: Registry,
    version: str | None,
    model: str | None,
    s: BatchSettings,
    storage_options: dict[str, Any] | None,
    on_plan: Callable[[Plan], None] | None,
    on_rows: Callable[[int], None] | None,
) -> RunSummary:
    started = time.perf_counter()
    p = plan(input_url, output_url, registry, version=version, model=model, settings=s, storage_options=storage_options)
    if on_plan is not None:
        on_plan(p)
    results: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    drift = None
    refs = (output_url, p.registry_url, p.model, p.version)
    every = [part.to_dict() for part in p.partitions]
    with drift_process(s.drift and _drift_apart(p, s)) as child:
        if child is not None:  # it draws the pending partitions' samples and checks them while they score
            child.begin(refs, settings=s, storage_options=storage_options, pending=p.pending, partitions=every)
        for part in p.pending:
            try:
                results.append(
                    run_partition(
                        part.to_dict(),
                        *refs,
                        settings=s,
                        storage_options=storage_options,
                        on_rows=on_rows,
                        drift_apart=child is not None,
                    )
                )
            except FerryError as exc:
                failures[part.key] = str(exc)
        if s.drift:
            asked = time.perf_counter()
            drift = check_drift(*refs, settings=s, storage_options=storage_options, process=child, partitions=every)
            drift["waited_seconds"] = round(time.perf_counter() - asked, 4)  # what the check added to the run
    summary = summarise(p, results, failures, time.perf_counter() - started)
    summary.drift = drift
    note_run(p.registry_url, summary)
    if failures:
        raise PartitionsFailed(failures, finished=len(summary.results), summary=summary)
    return summary


def _drift_apart(p: Plan, s: BatchSettings) -> bool:
    """Whether the drift check is worth a process of its own: enough pending input for scoring to hide the
    Evidently import (measured in bench/README.md), and no copy of Evidently already imported in this process."""
    if s.drift_process_mb == 0:
        return True
    pending_mb = sum(part.size for part in p.pending) / 2**20
    return pending_mb >= s.drift_process_mb and "evidently.metrics" not in sys.modules


def note_run(registry_url: str, summary: RunSummary) -> None:
    """Tell ``ferry status`` where this run's output is and which version scored it (never fails the run)."""
    from ferry import whereabouts

    d = summary.to_dict()
    try:
        whereabouts.note_batch_run(
            Registry(registry_url),
            d["model"],
            output=d["output"],
            version=d["version"],
            rows=d["rows"],
            scored=d["scored"],
        )
    except (FerryError, OSError) as exc:
        log.warning("could not record the batch run in the registry: %s", exc)


class RowProgress:
    """An ``on_rows`` callback that reports progress as text at most every ``every_s`` seconds (for flow logs).

    ``report`` receives e.g. ``"day=01: 1,310,720 of 2,500,000 rows (52%), 98,304 rows/s"``; ``total`` is None when
    unknown (CSV partitions), and the share is then left out.
    """

    def __init__(self, report: Callable[[str], None], label: str, total: int | None, *, every_s: float = 10.0) -> None:
        self.report, self.label, self.total, self.every_s = report, label, total, every_s
        self.rows = 0
        self._started = self._last = time.perf_counter()

    def __call__(self, n: int) -> None:
        self.rows += n
        now = time.perf_counter()
        if now - self._last < self.every_s:
            return
        self._last = now
        rate = self.rows / (now - self._started) if now > self._started else 0.0
        share = f" of {self.total:,} rows ({self.rows / self.total:.0%})" if self.total else " rows"
        self.report(f"{self.label}: {self.rows:,}{share}, {rate:,.0f} rows/s")


def expected_rows(p: Plan, *, storage_options: dict[str, Any] | None = None) -> int | None:
    """Rows still to score, when every pending partition is Parquet (read from footers); else None."""
    total = 0
    for part in p.pending:
        n = count_rows(part, storage_options=storage_options)
        if n is None:
            return None
        total += n
    return total
