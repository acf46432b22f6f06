"""The housekeeping flow: remove kept data older than its retention (``ferry.governance.retention``)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from ferry.governance import RetentionSettings, sweep, sweep_runs
from ferry.registry import Registry
from ferry.settings import StorageSettings
from ferry_flows.artifacts import table_artifact


@task(name="sweep-model")
def sweep_model(registry_url: str, model: str, dry_run: bool) -> dict[str, Any]:
    """Sweep one model's logs, samples, reports and history."""
    return sweep(registry_url, RetentionSettings(), models=[model], dry_run=dry_run).to_dict()


@task(name="sweep-runs")
def sweep_work_dir(work_dir: str, dry_run: bool) -> dict[str, Any]:
    """Sweep the retrain run directories of this worker's work directory."""
    return sweep_runs(work_dir, RetentionSettings(), dry_run=dry_run).to_dict()


@flow(name="housekeeping", description="Remove logs, samples, reports and run directories older than their retention.")
def housekeeping(
    registry_url: str | None = None, work_dir: str | None = None, dry_run: bool = False
) -> dict[str, dict[str, Any]]:
    """Sweep every model of the registry and the work directory; ``dry_run`` lists what would go."""
    storage = StorageSettings()
    registry_url = registry_url or storage.registry_url
    results = {model: sweep_model(registry_url, model, dry_run) for model in Registry(registry_url).models()}
    results["(run directories)"] = sweep_work_dir(work_dir or storage.work_dir, dry_run)
    logger = get_run_logger()
    rows = []
    for name, result in results.items():
        for kind, count in sorted(result["counts"].items()):
            rows.append({"model": name, "kind": kind, "removed": str(count), "bytes": str(result["bytes"][kind])})
        logger.info("%s: %s", name, result["counts"] or "nothing older than its retention")
    table_artifact(
        rows or [{"model": "-", "kind": "-", "removed": "0", "bytes": "0"}],
        key="housekeeping",
        description=("Would remove (dry run)" if dry_run else "Removed") + " data older than its retention",
    )
    return results
