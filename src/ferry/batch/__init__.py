"""Batch scoring: stream partitions through ``model.onnx``, write partitioned Parquet, resume after a crash.

The plain functions here do all the work; ``flows/batch_score.py`` and ``ferry score`` only wire them up.

| module | what lives there |
|---|---|
| :mod:`~ferry.batch.settings` | :class:`BatchSettings` (``FERRY_BATCH_*``) |
| :mod:`~ferry.batch.model` | which version a run scores with, and its explainer, loaded once per process |
| :mod:`~ferry.batch.explanations` | ``--explain``: a run's explain options and the explanation columns they add |
| :mod:`~ferry.batch.partitions` | the input: partitions found and streamed in record batches |
| :mod:`~ferry.batch.rows` | row-level validation and ONNX encoding on Arrow record batches |
| :mod:`~ferry.batch.partition` | scoring one partition and committing its output |
| :mod:`~ferry.batch.output` | the output directory, its atomic writes and its lock |
| :mod:`~ferry.batch.overlap` | reading ahead and writing behind, in threads beside scoring |
| :mod:`~ferry.batch.sample` | the drift sample: a seeded reservoir of each partition's good rows |
| :mod:`~ferry.batch.drift` | the run's input-drift check (through the gate's Evidently adapter) |
| :mod:`~ferry.batch.drift_process` | that check in a second process, overlapping scoring |
| :mod:`~ferry.batch.run` | a run: plan, score the pending partitions, check drift, summarise |
| :mod:`~ferry.batch.progress` | a run's progress: rows scored as log lines, rows still to score |
"""

from __future__ import annotations

from ferry.batch.drift import check_drift, warm_drift
from ferry.batch.drift_process import DriftProcess, drift_process
from ferry.batch.explanations import Explaining, ExplainOptions, describe_options, explain_options
from ferry.batch.model import LoadedModel, load_batch_explainer, load_model, resolve_version
from ferry.batch.output import OutputDir, OutputLocked, output_lock
from ferry.batch.overlap import WriteBehind, prefetch
from ferry.batch.partition import REJECT_SCHEMA, PartitionResult, score_partition
from ferry.batch.partitions import Partition, count_rows, discover_partitions, iter_batches, schema_batches
from ferry.batch.progress import RowProgress, expected_rows
from ferry.batch.rows import Checked, Problem, check_batch, row_problems, split_rows
from ferry.batch.run import (
    LOST_SCHEDULER,
    ClusterLost,
    PartitionsFailed,
    Plan,
    RunSummary,
    finish_run,
    note_run,
    plan,
    run_partition,
    score,
    summarise,
)
from ferry.batch.sample import Reservoir, keep_sample, sample_partition, seed_of
from ferry.batch.settings import BatchSettings

__all__ = [
    "LOST_SCHEDULER",
    "REJECT_SCHEMA",
    "BatchSettings",
    "Checked",
    "ClusterLost",
    "DriftProcess",
    "ExplainOptions",
    "Explaining",
    "LoadedModel",
    "OutputDir",
    "OutputLocked",
    "Partition",
    "PartitionResult",
    "PartitionsFailed",
    "Plan",
    "Problem",
    "Reservoir",
    "RowProgress",
    "RunSummary",
    "WriteBehind",
    "check_batch",
    "check_drift",
    "count_rows",
    "describe_options",
    "discover_partitions",
    "drift_process",
    "expected_rows",
    "explain_options",
    "finish_run",
    "iter_batches",
    "keep_sample",
    "load_batch_explainer",
    "load_model",
    "note_run",
    "output_lock",
    "plan",
    "prefetch",
    "resolve_version",
    "row_problems",
    "run_partition",
    "sample_partition",
    "schema_batches",
    "score",
    "score_partition",
    "seed_of",
    "split_rows",
    "summarise",
    "warm_drift",
]
