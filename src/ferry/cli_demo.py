"""The surfaces part of ``ferry demo``: the online service answering and switching versions, a batch run, an edge
device syncing from a static host, and the three compared bit for bit.

Each step needs its extra (``online``, ``batch``, ``edge``); a step whose extra is missing is skipped with a note.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from ferry.errors import FerryError
from ferry.registry import Registry
from ferry.schema import Schema
from ferry.serving import Service, StaticHost
from ferry.showcase import Parity, Scores, batch_scores, compare, edge_scores, online_scores, records

__all__ = ["DemoService", "batch_step", "edge_step", "has_extra", "parity_step", "show_answers", "wait_for_version"]

SWITCH_TIMEOUT_S = 60.0


def _out() -> Console:
    return Console()


def has_extra(*modules: str) -> bool:
    return all(find_spec(m) is not None for m in modules)


class DemoService(Service):
    """``bentoml serve`` on the demo registry with a one-off API key (predict + admin scopes)."""

    def __init__(self, registry: Registry, directory: Path) -> None:
        from ferry.online.auth import hash_key

        self.key = secrets.token_urlsafe(24)
        keys = [{"name": "demo", "sha256": hash_key(self.key), "scopes": ["predict", "admin"]}]
        super().__init__(
            log=directory / "serve.log",
            env={
                "FERRY_REGISTRY_URL": registry.url,
                "FERRY_ONLINE_API_KEYS": json.dumps(keys),
                "FERRY_ONLINE_POLL_INTERVAL_S": "0.5",
                "BENTOML_HOME": str(directory / "bentoml-home"),
            },
        )

    def ask(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        answer: dict[str, Any] = self.post("/predict", {"records": rows}, key=self.key)
        return answer


def show_answers(service: DemoService, rows: list[dict[str, Any]], schema: Schema, title: str) -> str:
    """Ask the service about ``rows``, print the answers, return the version that answered."""
    answer = service.ask(rows)
    positive = str(schema.target_classes[-1])
    _out().print(title)
    table = Table()
    for col in (schema.id or "row", "prediction", f"p({positive})", "version"):
        table.add_column(col, no_wrap=col == "version")
    for i, (row, p) in enumerate(zip(rows, answer["predictions"], strict=True)):
        ident = str(row[schema.id]) if schema.id else str(i)
        table.add_row(ident, str(p["prediction"]), f"{p['probabilities'][positive]:.4f}", answer["version"])
    _out().print(table)
    return str(answer["version"])


def wait_for_version(service: DemoService, rows: list[dict[str, Any]], version: str) -> None:
    """Ask until the service answers with ``version`` (it polls the channel pointer; nothing is restarted)."""
    started = time.monotonic()
    while time.monotonic() - started < SWITCH_TIMEOUT_S:
        if service.ask(rows[:1])["version"] == version:
            return
        time.sleep(0.2)
    raise FerryError(f"the online service did not switch to {version} within {SWITCH_TIMEOUT_S:.0f} s")


def batch_step(registry: Registry, frame: pd.DataFrame, directory: Path) -> Path:
    """Write ``frame`` as Parquet and score it with ``ferry.batch.score`` (the batch channel, else the champion)."""
    from ferry import batch

    source = directory / "batch-input"
    output = directory / "batch-output"
    shutil.rmtree(output, ignore_errors=True)
    source.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(source / "sample.parquet", index=False)
    summary = batch.score(str(source), str(output), registry).to_dict()
    _out().print(
        f"scored {summary['scored']:,} rows with {summary['version']} in {summary['seconds']:.2f} s, "
        f"{summary['rejected']} rejected -> {output}"
    )
    return output


def edge_step(registry: Registry, model: str, version: str, directory: Path) -> Any:
    """Promote ``version`` to ``edge/stable``, publish it, serve the repository statically, and sync a device.

    Returns the device's active ``EdgeModel``. The static host stops when this returns; the device keeps its model.
    """
    from ferry_edge.agent import Agent

    from ferry.publish import open_repository, publish_channel
    from ferry.settings import EdgeSettings

    settings = EdgeSettings()
    repo_dir = Path(settings.repo_url.removeprefix("file://"))
    if "://" in settings.repo_url:
        raise FerryError(
            f"the demo serves the edge repository from a local directory; FERRY_EDGE_REPO_URL is {repo_dir}"
        )
    registry.promote(version, "edge/stable", model=model, reason="demo: field release")
    result = publish_channel(registry, open_repository(settings), model, "edge/stable")
    state = "published" if result.changed else "already published"
    _out().print(f"edge/stable -> {version}: {state} {result.target} (sha256 {result.sha256[:16]}, {result.length} B)")
    device = directory / "device"
    shutil.rmtree(device, ignore_errors=True)  # a fresh device, provisioned with this repository's first root
    with StaticHost(repo_dir) as host:
        agent = Agent.init(
            device,
            repo_url=host.url,
            model=model,
            channel="edge/stable",
            trusted_root=(repo_dir / "metadata" / "1.root.json").read_bytes(),
        )
        synced = agent.sync()
    _out().print(f"device at {device} synced from {host.url}: {synced.detail}, active {synced.version}")
    return agent.active()


def parity_step(surfaces: list[Scores]) -> list[Parity]:
    """Compare every surface with the first; print a table; raise when any output differs."""
    results = [compare(surfaces[0], other) for other in surfaces[1:]]
    table = Table(title="the same rows on each surface", title_justify="left")
    for col in ("compared", "rows", "rows that differ", "max |Δp|", "same version"):
        table.add_column(col)
    for p in results:
        style = "green" if p.identical else "bold red"
        table.add_row(
            f"{p.surfaces[0]} vs {p.surfaces[1]}",
            f"{p.rows:,}",
            f"[{style}]{p.mismatched_rows}[/]",
            f"{p.max_abs_diff:.1e}" if p.max_abs_diff else "0",
            "yes" if p.same_version else "[bold red]no[/]",
        )
    _out().print(table)
    bad = [p for p in results if not p.identical]
    if bad:
        raise FerryError("surfaces disagree: " + ", ".join(f"{a} vs {b}" for a, b in (p.surfaces for p in bad)))
    _out().print(
        f"[bold green]bit-for-bit identical[/] on {results[0].rows:,} rows across "
        + ", ".join(s.surface for s in surfaces)
    )
    return results


def sample(frame: pd.DataFrame, schema: Schema, n: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    part = frame.head(n).reset_index(drop=True)
    return part, records(part, schema)


def surfaces_scores(
    service: DemoService, output: Path, device_model: Any, rows: list[dict[str, Any]], schema: Schema
) -> list[Scores]:
    return [
        online_scores(service, service.key, rows, schema),
        batch_scores(output, rows, schema),
        edge_scores(device_model, rows, schema),
    ]
