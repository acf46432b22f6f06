"""The ``retrain`` Prefect flow: thin tasks around :mod:`ferry.train.steps`, passing the run directory between them.

Run it with ``ferry train --data ... --schema ...``, or deploy it from ``prefect.yaml``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, pause_flow_run, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from pydantic import Field

from ferry.explain import Importance, table_rows
from ferry.governance import cards
from ferry.registry import Registry
from ferry.settings import GateSettings, StorageSettings, TrainSettings
from ferry.train import steps as core
from ferry.train.run_files import read_json
from ferry.train.source import resolve_source
from ferry.train.summary import as_link, gate_rows, markdown_summary, metric_rows, report_note
from ferry_flows.artifacts import table_artifact
from ferry_flows.edge import publish_moved


@task(name="ingest", retries=2, retry_delay_seconds=5)
def ingest(data: str, schema: str, run_dir: str) -> dict[str, Any]:
    """Read and validate; retried because remote storage can fail transiently (bad data is not retried: same answer)."""
    summary = core.ingest(data, schema, Path(run_dir))
    logger = get_run_logger()
    logger.info(
        "ingested %d rows of %s (sha256 %s), task %s", summary.rows, data, summary.data_sha256[:12], summary.task
    )
    if summary.task_note:
        logger.info("%s", summary.task_note)
    return asdict(summary)


@task(name="new-data")
def new_data(run_dir: str, registry_url: str, champion_channel: str) -> dict[str, Any]:
    found = core.new_labelled_rows(Path(run_dir), Registry(registry_url), champion_channel)
    get_run_logger().info("%d of %d labelled rows are new: %s", found.rows, found.total, found.how)
    return asdict(found)


class Approval(RunInput):
    """The answer a person gives in the Prefect UI to a paused retrain."""

    approve: bool = Field(description="Promote the candidate (its gate passed; see the report linked above).")
    note: str = Field(default="", description="Recorded in the audit log with the promotion.")


def ask_approval(outcome: dict[str, Any], timeout_s: int) -> Approval | None:
    """Pause the run with the gate's evidence shown until someone approves or rejects; None when nobody did."""
    key = outcome["model"].replace("_", "-")
    create_markdown_artifact(
        markdown_summary(outcome) + f"\n\nGate report: {as_link(outcome['gate_html'])}",
        key=f"{key}-approval",
        description="Waiting for approval: the candidate and its evidence",
    )
    get_run_logger().warning(
        "candidate %s passed the gate; waiting up to %d s for approval (Resume in the UI)",
        outcome["version"],
        timeout_s,
    )
    try:
        answer: Approval = pause_flow_run(wait_for_input=Approval, timeout=timeout_s, key="approval")
    except FlowPauseTimeout:
        return None
    return answer


@task(name="data-quality", retries=0)
def data_quality(run_dir: str, gate: GateSettings) -> list[dict[str, Any]]:
    checks = core.check_data_quality(Path(run_dir), gate)
    failed = [c.name for c in checks if not c.passed]
    get_run_logger().info("data quality: %d checks, %d failed %s", len(checks), len(failed), failed or "")
    return [asdict(c) for c in checks]


@task(name="split")
def split(run_dir: str, settings: TrainSettings) -> dict[str, Any]:
    info = core.split_data(Path(run_dir), settings)
    get_run_logger().info(
        "%s split: %d train / %d holdout rows", info["method"], info["train_rows"], info["holdout_rows"]
    )
    return info


@task(name="train")
def train(run_dir: str, settings: TrainSettings) -> dict[str, Any]:
    info = core.train_candidate(Path(run_dir), settings)
    get_run_logger().info(
        "trained %s in %.1fs, best %s, CV %s %.4f",
        info["estimator"],
        info["fit_seconds"],
        info["best_params"],
        info["cv_metric"],
        info["cv_score"],
    )
    return info


@task(name="evaluate")
def evaluate(run_dir: str, settings: TrainSettings) -> dict[str, float]:
    return core.evaluate_candidate(Path(run_dir), settings)


@task(name="export-onnx")
def export_onnx(run_dir: str) -> str:
    return core.export_onnx(Path(run_dir))


@task(name="parity")
def parity(run_dir: str, gate: GateSettings) -> dict[str, Any]:
    result = core.check_parity(Path(run_dir), gate).to_dict()
    get_run_logger().info(
        "ONNX parity on %d rows: max |dprob| %.2e, label agreement %.4f",
        result["rows"],
        result["max_abs_diff"],
        result["label_agreement"],
    )
    return result


@task(name="gate")
def run_gate(run_dir: str, registry_url: str, gate: GateSettings, champion_channel: str) -> dict[str, Any]:
    result = core.run_gate(Path(run_dir), Registry(registry_url), gate, champion_channel=champion_channel)
    logger = get_run_logger()
    logger.info("gate %s (%d checks)", result.verdict, len(result.checks))
    for reason in result.reasons:
        logger.warning("gate: %s", reason)
    return result.to_dict()


@task(name="explain")
def explain(run_dir: str, registry_url: str, gate: GateSettings) -> dict[str, Any]:
    """The candidate's global importance table and pictures (after the gate: beside the champion it compared)."""
    found = core.explain_candidate(Path(run_dir), Registry(registry_url), gate)
    table = found["importance"]
    get_run_logger().info(
        "global importance of %d features (%d holdout rows explained), %d pictures, in %.1f s; top: %s",
        len(table["features"]), table["rows"], len(found["plots"]), found["seconds"],
        ", ".join(f["feature"] for f in table["features"][:3]),
    )  # fmt: skip
    return found


@task(name="register")
def register(run_dir: str, registry_url: str) -> dict[str, Any]:
    core.write_lineage(Path(run_dir))
    core.write_model_card(Path(run_dir))
    version = core.register_candidate(Path(run_dir), Registry(registry_url))
    get_run_logger().info("registered version %s of %s", version.id, version.model)
    return {"id": version.id, "model": version.model}


@task(name="promote")
def promote(registry_url: str, version_id: str, model: str, channels: list[str], reason: str) -> list[str]:
    registry = Registry(registry_url)
    records = core.promote_if_passed(registry, registry.get(version_id, model=model), channels, reason=reason)
    moved = [r["channel"] for r in records]
    get_run_logger().info("promoted %s to %s", version_id, moved or "nothing")
    return moved


@flow(name="retrain", description="Validate data, train a candidate, gate it on evidence, register and promote it.")
def retrain(
    data: str | None = None,
    schema_file: str | None = None,
    model: str | None = None,
    window_start: str | None = None,
    window_end: str | None = None,
    data_sources: dict[str, str] | None = None,
    promote_to: list[str] | None = None,
    champion_channel: str = "online/champion",
    registry_url: str | None = None,
    train_settings: TrainSettings | None = None,
    gate_settings: GateSettings | None = None,
    reason: str = "retrain: gate passed",
    min_new_rows: int = 0,
    require_approval: bool = False,
    approval_timeout_s: int = 86_400,
) -> dict[str, Any]:
    """Retrain on ``data`` (CSV or Parquet, local path or fsspec URL) described by ``schema_file`` (YAML or JSON).

    Asked for a ``model`` instead (the drift automation passes the event's model and time window), the data is
    ``data_sources[model]`` or the ``data`` template of the model's schema, with ``{start}``/``{end}`` filled from
    ``window_start``/``window_end``, and the schema is the one registered with the model's champion
    (:mod:`ferry.train.source`).

    The candidate is compared with the version behind ``champion_channel`` on the same holdout, and moved to every
    channel in ``promote_to`` (default: the champion channel) when the gate passes.

    With ``min_new_rows``, the run stops cleanly before training unless the data holds at least that many labelled
    rows the champion was not trained on. With ``require_approval``, a candidate that passed the gate waits (the run
    is paused, its evidence shown) until a person approves it; a rejection or no answer in ``approval_timeout_s``
    promotes nothing.
    """
    storage = StorageSettings()
    registry_url = registry_url or storage.registry_url
    train_settings = train_settings or TrainSettings()
    gate_settings = gate_settings or GateSettings()
    channels = promote_to if promote_to is not None else [champion_channel]
    run_dir = str(core.new_run_dir(storage.work_dir))
    source = resolve_source(
        Registry(registry_url), Path(run_dir), data=data, schema_file=schema_file, model=model,
        data_sources=data_sources, window_start=window_start, window_end=window_end, champion_channel=champion_channel,
    )  # fmt: skip
    data = source.data
    get_run_logger().info("retraining %s on %s (from %s)", source.model, data, source.came_from)

    ingested = ingest(data, source.schema_file, run_dir)
    if min_new_rows > 0:
        fresh = new_data(run_dir, registry_url, champion_channel)
        if fresh["rows"] < min_new_rows:
            why = f"only {fresh['rows']} new labelled rows ({fresh['how']}); min_new_rows is {min_new_rows}"
            get_run_logger().warning("not retraining: %s", why)
            create_markdown_artifact(
                f"**Not retrained**: {why}.", key=f"{ingested['model'].replace('_', '-')}-retrain-skipped"
            )
            return {"model": ingested["model"], "skipped": why, "data_url": data, "rows": ingested["rows"]}
    data_quality(run_dir, gate_settings)
    split(run_dir, train_settings)
    train(run_dir, train_settings)
    metrics = evaluate(run_dir, train_settings)
    export_onnx(run_dir)
    parity(run_dir, gate_settings)
    gate = run_gate(run_dir, registry_url, gate_settings, champion_channel)
    explained = explain(run_dir, registry_url, gate_settings)
    version = register(run_dir, registry_url)
    registry = Registry(registry_url)
    v = registry.get(version["id"], model=version["model"])
    champion_metrics = Path(run_dir) / "champion_metrics.json"
    outcome: dict[str, Any] = {
        "model": version["model"],
        "version": version["id"],
        "version_url": registry.version_url(v),
        "gate_html": registry.file_url(v, "gate.html"),
        "data_quality_html": registry.file_url(v, "data_quality.html"),
        "model_card": cards.render(json.loads(registry.read_bytes(v, cards.CARD_JSON)), version=v.id),
        "importance": table_rows(Importance.from_dict(explained["importance"])),
        "plots": {name: registry.file_url(v, name) for name in explained["plots"]},
        "data_url": data,
        "rows": ingested["rows"],
        "data_sha256": ingested["data_sha256"],
        "metrics": metrics,
        "champion_metrics": read_json(champion_metrics) if champion_metrics.exists() else None,
        "gate_passed": gate["passed"],
        "checks": gate["checks"],
        "reasons": gate["reasons"],
        "champion": gate["champion"],
        "promoted": [],
        "published": [],
        "approval": None,
        "run_dir": run_dir,
    }
    if require_approval and gate["passed"]:
        answer = ask_approval(outcome, approval_timeout_s)
        approved = answer is not None and answer.approve
        note = answer.note if answer is not None else f"no answer within {approval_timeout_s} s"
        outcome["approval"] = {"approved": approved, "note": note}
        if not approved:
            get_run_logger().warning("not promoted: %s", note or "rejected")
            channels = []
        elif note:
            reason = f"{reason}; approved: {note}"
    outcome["promoted"] = promote(registry_url, version["id"], version["model"], channels, reason)
    if published := publish_moved(registry_url, version["model"], outcome["promoted"]):
        outcome["published"] = published
    _publish_artifacts(outcome)
    return outcome


def _publish_artifacts(outcome: dict[str, Any]) -> None:
    key = outcome["model"].replace("_", "-")
    create_markdown_artifact(markdown_summary(outcome), key=f"{key}-retrain-summary", description="Retrain summary")
    table_artifact(
        metric_rows(outcome["metrics"], outcome["champion_metrics"]),
        key=f"{key}-metrics",
        description=f"Holdout metrics of {outcome['version']}",
    )
    table_artifact(
        gate_rows(outcome["checks"]),
        key=f"{key}-gate",
        description=f"Gate checks of {outcome['version']}: {'passed' if outcome['gate_passed'] else 'rejected'}",
    )
    table_artifact(
        outcome["importance"],
        key=f"{key}-importance",
        description=f"Global importance of {outcome['version']} (rank moves against the champion)",
    )
    create_markdown_artifact(
        "\n".join(
            [f"- [{name}]({as_link(url)})" for name, url in outcome["plots"].items()]
            + report_note(next(iter(outcome["plots"].values()), ""))
        ),
        key=f"{key}-plots",
        description=f"Pictures of {outcome['version']}: global importance and evaluation beside the champion",
    )
    create_markdown_artifact(
        outcome["model_card"], key=f"{key}-model-card", description=f"Model card of {outcome['version']}"
    )
    create_link_artifact(
        as_link(outcome["gate_html"]),
        link_text="Evidently model-quality report",
        key=f"{key}-gate-report",
        description="Evidently report behind the gate's model checks",
    )
    create_link_artifact(
        as_link(outcome["data_quality_html"]),
        link_text="Evidently data-quality report",
        key=f"{key}-data-quality-report",
        description="Evidently report behind the gate's data checks",
    )
