"""The ``batch-score`` Prefect flow: one task per input partition over :mod:`ferry.batch`, fanned out by a task runner.

Tasks receive references (partition URL and key, output URL, registry URL, version id) and return small dicts, never
frames. The runner is chosen per run:

- ``process`` (default): a local process pool (``workers`` processes, one onnxruntime thread each);
- ``thread``: a thread pool in the flow's process (cheapest start, for small inputs);
- ``dask``: a Dask cluster through prefect-dask, at ``cluster_address`` (implied when an address is given).

Run it with ``ferry score`` (which calls the same core functions without Prefect) or deploy it from
``prefect.yaml``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from ferry import batch as core
from ferry.batch import OutputDir, Partition, count_rows, output_lock
from ferry.errors import MissingExtra
from ferry.registry import Registry
from ferry.settings import StorageSettings
from ferry.train.summary import as_link
from ferry_flows.artifacts import table_artifact


@task(name="plan-batch", retries=1, retry_delay_seconds=2)
def plan_batch(
    input: str,
    output: str,
    registry_url: str,
    version: str | None,
    model: str | None,
    settings: core.BatchSettings,
    explain: bool = False,
    top_k: int | None = None,
    explain_class: str | None = None,
) -> dict[str, Any]:
    """Resolve the version, list partitions and read the manifest; returns references only. With ``explain``, the
    explain options and the version's ``explain.npz`` are checked here, before any partition runs."""
    p = core.plan(
        input,
        output,
        Registry(registry_url),
        version=version,
        model=model,
        settings=settings,
        explain=explain,
        top_k=top_k,
        explain_class=explain_class,
    )
    get_run_logger().info(
        "scoring %d partition(s) of %s with %s/%s (%d already finished)",
        len(p.partitions),
        input,
        p.model,
        p.version,
        len(p.finished),
    )
    return p.to_dict()


@task(name="score-partition", retries=2, retry_delay_seconds=1, task_run_name="score-{partition[key]}")
def score_partition(
    partition: dict[str, Any],
    output: str,
    registry_url: str,
    model: str,
    version: str,
    settings: core.BatchSettings,
    explain: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score one partition (and explain its rows with the plan's ``explain`` options); retried on failure. Finished
    partitions are never redone (see the manifest).

    Logs its progress every ``FERRY_BATCH_PROGRESS_S`` seconds while it runs (rows done, share, rows/s)."""
    logger = get_run_logger()
    total = count_rows(Partition.from_dict(partition))
    progress = core.RowProgress(logger.info, partition["key"], total, every_s=settings.progress_s)
    result = core.run_partition(
        partition, output, registry_url, model, version, settings=settings, on_rows=progress, explain=explain
    )
    rate = result["rows"] / result["seconds"] if result["seconds"] > 0 else 0.0
    logger.info(
        "%s: %d rows, %d scored, %d rejected in %.2f s (%.0f rows/s)",
        result["partition"],
        result["rows"],
        result["scored"],
        result["rejected"],
        result["seconds"],
        rate,
    )
    return result


@task(name="check-drift", retries=0, task_run_name="check-drift")
def check_drift(
    output: str, registry_url: str, model: str, version: str, settings: core.BatchSettings
) -> dict[str, Any]:
    """Input drift of the run's sampled rows against the version's reference; never fails the run."""
    d = core.check_drift(output, registry_url, model, version, settings=settings)
    get_run_logger().info("input drift: %s", d["text"])
    return d


def make_runner(runner: str, cluster_address: str | None, workers: int) -> TaskRunner[Any]:
    """The task runner for ``runner``; a cluster address means Dask."""
    if cluster_address or runner == "dask":
        if not cluster_address:
            raise ValueError("runner 'dask' needs cluster_address, e.g. tcp://scheduler:8786")
        try:
            from prefect_dask.task_runners import DaskTaskRunner
        except ModuleNotFoundError as exc:
            raise MissingExtra("batch", "prefect-dask") from exc
        dask_runner: TaskRunner[Any] = DaskTaskRunner(address=cluster_address)
        return dask_runner
    if runner == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    if runner == "process":
        return ProcessPoolTaskRunner(max_workers=workers)
    raise ValueError(f"runner must be 'process', 'thread' or 'dask', got {runner!r}")


@flow(name="batch-score", description="Score partitioned CSV/Parquet with a registered model version into Parquet.")
def batch_score(
    input: str,
    output: str,
    version: str | None = None,
    model: str | None = None,
    registry_url: str | None = None,
    runner: Literal["process", "thread", "dask"] = "process",
    cluster_address: str | None = None,
    workers: int = 2,
    batch_rows: int = 65_536,
    explain: bool = False,
    top_k: int | None = None,
    explain_class: str | None = None,
) -> dict[str, Any]:
    """Score ``input`` (a CSV/Parquet file, directory or glob; local or fsspec URL) into ``output``.

    The version is ``version`` when given, else the ``batch`` channel's, else ``online/champion``'s. Partitions
    finished by an earlier run of the same output are skipped. The flow fails, after every other partition has
    finished, when some partition still fails after its retries. With ``explain``, each good row also gets its
    explanation columns (``ferry score --explain``): the ``top_k`` features (default ``FERRY_EXPLAIN_TOP_K``, at
    most all) for ``explain_class`` (default: the class predicted for the row).
    """
    started = time.perf_counter()
    logger = get_run_logger()
    registry_url = registry_url or StorageSettings().registry_url
    settings = core.BatchSettings(batch_rows=batch_rows)
    if settings.drift and (runner != "thread" or cluster_address):
        core.warm_drift()  # partitions score in other processes: import Evidently meanwhile for check-drift
    with output_lock(OutputDir(output)):  # a second run on this output fails at once, naming this one
        planned = plan_batch(input, output, registry_url, version, model, settings, explain, top_k, explain_class)
        results: list[dict[str, Any]] = []
        failures: dict[str, str] = {}
        pending = planned["pending"]
        if pending:
            with make_runner(runner, cluster_address, workers) as task_runner:
                futures: dict[PrefectFuture[dict[str, Any]], str] = {}
                for part in pending:
                    params = {
                        "partition": part,
                        "output": output,
                        "registry_url": registry_url,
                        "model": planned["model"],
                        "version": planned["version"],
                        "settings": settings,
                        "explain": planned["explain"],
                    }
                    futures[task_runner.submit(score_partition, params)] = part["key"]
                for done, future in enumerate(as_completed(list(futures)), start=1):
                    key = futures[future]
                    try:
                        results.append(future.result())
                    except Exception as exc:
                        failures[key] = str(exc)
                        logger.error("%s failed after retries: %s", key, exc)
                    rows = sum(r["rows"] for r in results)
                    elapsed = time.perf_counter() - started
                    logger.info(
                        "progress: %d/%d partitions, %d rows, %.0f rows/s", done, len(pending), rows, rows / elapsed
                    )
        drift = (
            check_drift(output, registry_url, planned["model"], planned["version"], settings)
            if settings.drift
            else None
        )
        summary = core.finish_run(planned, results, failures, time.perf_counter() - started, drift)
    outcome = summary.to_dict()
    _publish_artifacts(outcome)
    if failures and cluster_address and any(m in text for text in failures.values() for m in core.LOST_SCHEDULER):
        raise core.ClusterLost(cluster_address, finished=len(results), pending=len(pending))
    if failures:
        raise core.PartitionsFailed(failures, finished=len(summary.results), summary=summary)
    return outcome


def _publish_artifacts(outcome: dict[str, Any]) -> None:
    key = outcome["model"].replace("_", "-")
    failed = outcome["failures"]
    lines = [
        f"# batch score: {outcome['model']} version `{outcome['version']}`",
        "",
        "| | |",
        "|---|---|",
        f"| partitions | {outcome['partitions']} ({outcome['skipped']} finished earlier, {len(failed)} failed) |",
        f"| rows | {outcome['rows']:,} |",
        f"| scored | {outcome['scored']:,} |",
        f"| rejected | {outcome['rejected']:,} |",
        f"| time | {outcome['seconds']:.2f} s |",
        f"| rows/s | {outcome['rows_per_s']:,.0f} |",
        f"| output | {outcome['output']} |",
        f"| explanations | {core.describe_options(outcome['explain'])} |",
        f"| input drift | {outcome['drift']['text'] if outcome['drift'] else 'not checked (FERRY_BATCH_DRIFT off)'} |",
    ]
    lines += [f"| failed: {k} | {v} |" for k, v in sorted(failed.items())]
    create_markdown_artifact("\n".join(lines), key=f"{key}-batch-score", description="Batch scoring summary")
    rows = [
        {k: r[k] for k in ("partition", "rows", "scored", "rejected", "seconds", "skipped", "output", "rejects")}
        for r in outcome["results"]
    ]
    if rows:
        table_artifact(rows, key=f"{key}-batch-partitions", description="Partitions of the batch run")
    drift = outcome["drift"]
    if drift and drift["columns"]:
        table = [
            {
                "feature": c["feature"],
                "method": c["method"],
                "drift score": c["score"],
                "threshold": c["threshold"],
                "drifted?": "yes" if c["drifted"] else "no",
            }
            for c in drift["columns"]
        ]
        table_artifact(table, key=f"{key}-batch-drift", description=f"Input drift: {drift['text']}")
    if drift and drift["report"]:
        create_link_artifact(
            as_link(drift["report"]),
            link_text="Evidently input-drift report",
            key=f"{key}-batch-drift-report",
            description=f"Input drift against the reference of version {outcome['version']}",
        )
    create_link_artifact(
        as_link(outcome["output"]),
        link_text="batch output",
        key=f"{key}-batch-output",
        description="Where the scores (scores/), rejects (rejects/) and manifest (_manifest/) are",
    )
