"""A batch run: plan the partitions, score the pending ones, check input drift, and summarise.

- :func:`plan` finds the input partitions (:mod:`ferry.batch.partitions`), prepares the output directory and says
  which partitions a previous run already finished (they are skipped).
- :func:`score` runs every pending partition in this process, one after another; a partition that fails is reported
  and the others still score. The run's input-drift check (:mod:`ferry.batch.drift`) runs in a process started with
  the run (:mod:`ferry.batch.drift_process`): it draws the partitions' samples from the input and checks them while
  the partitions score.
- :func:`run_partition` is the unit the ``batch-score`` flow fans out: plain references in, a plain dict out.

With ``explain``, every good row is also explained (:mod:`ferry.batch.explanations`); the plan checks the options
and the version's ``explain.npz`` before anything is written, and refuses an output whose finished partitions were
written with other explain options.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ferry import status
from ferry.batch.drift import check_drift
from ferry.batch.drift_process import drift_process
from ferry.batch.explanations import Explaining, ExplainOptions, check_recorded, run_options
from ferry.batch.model import load_batch_explainer, load_model, resolve_version
from ferry.batch.output import OutputDir, output_lock
from ferry.batch.partition import PartitionResult, score_partition
from ferry.batch.partitions import Partition, discover_partitions
from ferry.batch.settings import BatchSettings
from ferry.errors import FerryError, RegistryError
from ferry.registry.store import Registry

__all__ = [
    "PartitionsFailed",
    "Plan",
    "RunSummary",
    "finish_run",
    "note_run",
    "plan",
    "run_partition",
    "score",
    "summarise",
]


log = logging.getLogger("ferry.batch")


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


class ClusterLost(FerryError, ConnectionError):
    """The Dask scheduler went away during a run; the partitions committed before that stay done."""

    def __init__(self, address: str, finished: int, pending: int) -> None:
        self.address, self.finished, self.pending = address, finished, pending
        super().__init__(
            f"the Dask scheduler at {address} went away during the run ({finished} of {pending} partition(s) "
            f"finished first); start the cluster again and run the same command: finished partitions are skipped"
        )


LOST_SCHEDULER = ("scheduler-connection-lost", "lost the connection to the scheduler")
"""What Dask says of a task whose scheduler went away."""


@dataclass(frozen=True)
class Plan:
    """What a run will do: every partition, which are already finished, with which version, and the explain
    options (:meth:`ExplainOptions.to_dict`; None: no explanations)."""

    input: str
    output: str
    registry_url: str
    model: str
    version: str
    partitions: list[Partition]
    finished: dict[str, PartitionResult]
    explain: dict[str, Any] | None = None

    @property
    def pending(self) -> list[Partition]:
        return [p for p in self.partitions if p.key not in self.finished]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what the flow's tasks hand each other), with the pending partitions spelled out."""
        return {
            "input": self.input,
            "output": self.output,
            "registry_url": self.registry_url,
            "model": self.model,
            "version": self.version,
            "partitions": [p.to_dict() for p in self.partitions],
            "finished": [r.to_dict() for r in self.finished.values()],
            "pending": [p.to_dict() for p in self.pending],
            "explain": self.explain,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Plan:
        finished = [PartitionResult(**r) for r in raw["finished"]]
        return cls(
            input=str(raw["input"]),
            output=str(raw["output"]),
            registry_url=str(raw["registry_url"]),
            model=str(raw["model"]),
            version=str(raw["version"]),
            partitions=[Partition.from_dict(p) for p in raw["partitions"]],
            finished={r.partition: r for r in finished},
            explain=raw.get("explain"),
        )


def plan(
    input_url: str,
    output_url: str,
    registry: Registry,
    *,
    version: str | None = None,
    model: str | None = None,
    settings: BatchSettings | None = None,
    storage_options: dict[str, Any] | None = None,
    explain: bool = False,
    top_k: int | None = None,
    explain_class: str | None = None,
) -> Plan:
    """Resolve the version, list partitions, prepare the output and read what earlier runs finished.

    Refuses (RegistryError) to add to an output that another model version already wrote to, so one output never
    mixes versions, and (ConfigError) to add to one written with other explain options. With ``explain``, the
    options (``top_k``, ``explain_class``) and the version's ``explain.npz`` are checked before anything is written
    (ConfigError; :class:`ferry.errors.BackgroundMissing`).
    """
    v = resolve_version(registry, version=version, model=model, settings=settings)
    options = run_options(registry, v, explain=explain, top_k=top_k, explain_class=explain_class)
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
    check_recorded(output_url, records, options)
    keys = {p.key for p in parts}
    finished = {
        k: PartitionResult(**{**{f: r[f] for f in _RESULT_FIELDS if f in r}, "skipped": True})
        for k, r in records.items()
        if k in keys and out.fs.exists(out.scores(k))
    }
    explained = None if options is None else options.to_dict()
    return Plan(input_url, output_url, registry.url, v.model, v.id, parts, finished, explained)


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
    explain: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`score_partition` from references only (what a task in another process or on Dask receives).

    With ``drift_apart``, the partition's drift sample is left to the run's drift process (it draws it meanwhile).
    With ``explain`` (the plan's explain options), the rows are explained by the version's explainer, loaded once
    per process.
    """
    s = settings or BatchSettings()
    loaded = load_model(registry_url, model, version, threads=s.threads)
    options = ExplainOptions.from_dict(explain)
    explaining = None if options is None else Explaining(load_batch_explainer(registry_url, model, version), options)
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
        explain=explaining,
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
    explain: dict[str, Any] | None = None

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
        explain=p.explain,
    )


def finish_run(
    plan: dict[str, Any],
    results: list[dict[str, Any]],
    failures: dict[str, str],
    seconds: float,
    drift: dict[str, Any] | None,
) -> RunSummary:
    """The end of a run whose partitions were scored elsewhere (the flow's tasks): its summary, with the drift
    check's, recorded where ``ferry status`` finds it."""
    p = Plan.from_dict(plan)
    summary = summarise(p, results, failures, seconds)
    summary.drift = drift
    note_run(p.registry_url, summary)
    return summary


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
    explain: bool = False,
    top_k: int | None = None,
    explain_class: str | None = None,
) -> RunSummary:
    """Score every pending partition of ``input_url`` into ``output_url`` in this process.

    With ``explain``, each good row is also explained: the explanation columns of the ``top_k`` features (default
    ``FERRY_EXPLAIN_TOP_K`` capped at the feature count) for ``explain_class`` (default: the class predicted for
    the row) follow the usual output columns.

    A partition that fails (corrupt file, unreadable storage) does not stop the others; when any failed, the
    summary is complete for the rest and PartitionsFailed is raised at the end, naming each failure. The output's
    lock is held for the whole run: a second run on the same output gets OutputLocked at once, naming the holder.
    """
    s = settings or BatchSettings()
    started = time.perf_counter()
    with output_lock(OutputDir(output_url, storage_options=storage_options)):
        p = plan(
            input_url,
            output_url,
            registry,
            version=version,
            model=model,
            settings=s,
            storage_options=storage_options,
            explain=explain,
            top_k=top_k,
            explain_class=explain_class,
        )
        return _score(p, s, storage_options, on_plan, on_rows, started)


def _score(
    p: Plan,
    s: BatchSettings,
    storage_options: dict[str, Any] | None,
    on_plan: Callable[[Plan], None] | None,
    on_rows: Callable[[int], None] | None,
    started: float,
) -> RunSummary:
    output_url = p.output
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
                        explain=p.explain,
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
    d = summary.to_dict()
    try:
        status.note_batch_run(
            Registry(registry_url),
            d["model"],
            output=d["output"],
            version=d["version"],
            rows=d["rows"],
            scored=d["scored"],
        )
    except (FerryError, OSError) as exc:
        log.warning("could not record the batch run in the registry: %s", exc)
