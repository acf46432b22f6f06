"""The steps of ``ferry demo`` beyond the retrain flow: the online service (answering, shadowing a challenger,
switching versions without a restart), an edge device syncing from a static host and sending heartbeats, batch
scoring, the monitor flow closing the loop, and the three surfaces compared bit for bit.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ferry.cli.parity import Parity, Scores, batch_scores, compare, edge_scores, online_scores, records
from ferry.cli.processes import Service, StaticHost
from ferry.errors import FerryError
from ferry.registry import Registry
from ferry.schema import Schema

__all__ = [
    "MARKER",
    "DemoDevice",
    "DemoService",
    "batch_step",
    "has_extra",
    "parity_step",
    "print_monitor",
    "send_traffic",
    "show_answers",
    "wait_for_challenger",
    "wait_for_version",
]

SWITCH_TIMEOUT_S = 60.0
FLUSH_TIMEOUT_S = 30.0
MARKER = ".ferry-demo"
"""Left in every directory the demo fills, so a later demo may clear it, and only it."""


def _out() -> Console:
    return Console()


def has_extra(*modules: str) -> bool:
    return all(find_spec(m) is not None for m in modules)


def fresh_world(*places: str | Path) -> None:
    """Start the demo from nothing: clear what an earlier demo left in ``places`` (local directories, or a registry
    on an object store such as ``s3://bucket/prefix``), each marked as the demo's.

    A place holding anything the demo did not make is never touched: FerryError names it and the way out.
    """
    from ferry import storage

    opened = []
    for place in places:
        fs, root = storage.open_fs(str(place))
        storage.check_reachable(fs, root, str(place))
        opened.append((place, fs, root.rstrip("/")))
    for place, fs, root in opened:
        if fs.exists(root) and fs.ls(root, detail=False) and not fs.exists(f"{root}/{MARKER}"):
            raise FerryError(
                f"{place} holds data the demo did not make; run the demo elsewhere (--registry, FERRY_EDGE_REPO_URL, "
                f"FERRY_EDGE_KEYS_DIR, --dir) or move that data away"
            )
    for place, fs, root in opened:
        if "://" in str(place):
            if fs.exists(root):
                fs.rm(root, recursive=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
            Path(root).mkdir(parents=True)
        fs.pipe_file(f"{root}/{MARKER}", b"made by `ferry demo`; the next demo run clears this place\n")


class DemoService(Service):
    """``bentoml serve`` on the demo registry: the champion answers, a challenger (when there is one) scores every
    request in shadow; every prediction is logged; one-off keys for the demo (predict, feedback, admin) and for
    devices (telemetry)."""

    def __init__(self, registry: Registry, directory: Path) -> None:
        from ferry.online.auth import hash_key

        self.key = secrets.token_urlsafe(24)
        self.device_key = secrets.token_urlsafe(24)
        keys = [
            {"name": "demo", "sha256": hash_key(self.key), "scopes": ["predict", "feedback", "admin"]},
            {"name": "devices", "sha256": hash_key(self.device_key), "scopes": ["telemetry"]},
        ]
        self.registry = registry
        super().__init__(
            log=directory / "serve.log",
            env={
                "FERRY_REGISTRY_URL": registry.url,
                "FERRY_ONLINE_API_KEYS": json.dumps(keys),
                "FERRY_ONLINE_POLL_INTERVAL_S": "0.5",
                "FERRY_ONLINE_ROUTING": "shadow",
                "FERRY_ONLINE_PREDICTION_SAMPLE_RATE": "1.0",
                "FERRY_ONLINE_LOG_FLUSH_INTERVAL_S": "1",
                "BENTOML_HOME": str(directory / "bentoml-home"),
            },
        )

    def ask(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        answer: dict[str, Any] = self.post("/predict", {"records": rows}, key=self.key)
        return answer

    def wait_for_log(self, model: str, kind: str, since: datetime, done: Callable[[pd.DataFrame], bool]) -> None:
        """Poll the service's ``kind`` log in the registry until ``done`` says it holds what was sent (the service
        flushes its logs every second)."""
        from ferry.monitor import online_logs_since

        started = time.monotonic()
        while time.monotonic() - started < FLUSH_TIMEOUT_S:
            if done(online_logs_since(self.registry, model, kind, since)):
                return
            time.sleep(0.2)
        raise FerryError(f"the online service did not write its {kind} log within {FLUSH_TIMEOUT_S:.0f} s: {self.log}")


def send_traffic(
    service: DemoService, rows: list[dict[str, Any]], *, chunk: int = 250, shadow: str | None = None
) -> int:
    """Requests of ``chunk`` records each; waits until the service's prediction log holds every answer (and, with
    ``shadow``, that version's shadow score of every record too)."""
    since = datetime.now(UTC)
    answered: set[str] = set()
    model = ""
    for start in range(0, len(rows), chunk):
        answer = service.ask(rows[start : start + chunk])
        model = answer["model"]
        answered.update(p["prediction_id"] for p in answer["predictions"])

    def logged(frame: pd.DataFrame) -> bool:
        if not answered <= set(frame.get("prediction_id", ())):
            return False
        if shadow is None:
            return True
        return int(((frame["role"] == "shadow") & (frame["version"] == shadow)).sum()) >= len(answered)

    if answered:
        service.wait_for_log(model, "predictions", since, logged)
    return len(rows)


def wait_for_challenger(service: DemoService, rows: list[dict[str, Any]], version: str) -> None:
    """Ask until the service scores requests with ``version`` in shadow: it loads and warms a new challenger when its
    poll sees the channel pointer move, and traffic sent before that is answered by the champion alone."""
    mark = f'ferry_online_requests_total{{version="{version}",outcome="shadow"}}'
    started = time.monotonic()
    while time.monotonic() - started < SWITCH_TIMEOUT_S:
        service.ask(rows[:1])
        if mark in service.metrics():
            return
        time.sleep(0.2)
    raise FerryError(f"the online service did not start shadowing {version} within {SWITCH_TIMEOUT_S:.0f} s")


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


def batch_step(registry: Registry, frame: pd.DataFrame, directory: Path, name: str) -> tuple[Path, dict[str, Any]]:
    """Write ``frame`` as Parquet and score it with ``ferry.batch.score`` (the batch channel, else the champion)."""
    from ferry import batch

    source = directory / "batch-input" / name
    output = directory / "batch-output" / name
    shutil.rmtree(output, ignore_errors=True)
    source.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(source / "part-0.parquet", index=False)
    summary = batch.score(str(source), str(output), registry).to_dict()
    _out().print(
        f"scored {summary['scored']:,} rows with {summary['version']} in {summary['seconds']:.2f} s, "
        f"{summary['rejected']} rejected -> {output}"
    )
    return output, summary


class DemoDevice:
    """A device provisioned with the repository's first root, following ``edge/stable`` through a static host."""

    def __init__(self, home: Path, repo_dir: Path, host: StaticHost, model: str, service: DemoService | None) -> None:
        from ferry_edge.agent import Agent

        shutil.rmtree(home, ignore_errors=True)  # a fresh device
        self.home = home
        self.service = service
        self.agent = Agent.init(
            home,
            repo_url=host.url,
            model=model,
            channel="edge/stable",
            trusted_root=(repo_dir / "metadata" / "1.root.json").read_bytes(),
        )

    def sync(self) -> str | None:
        result = self.agent.sync()
        _out().print(f"device {self.home.name}: {result.detail}, active {result.version}")
        return result.version

    def predict_and_report(self, rows: list[dict[str, Any]]) -> None:
        """Score ``rows`` offline, fold them into the drift sketch, and send a heartbeat to the online service."""
        from ferry_edge.telemetry import DriftSketch, Heartbeats

        model = self.agent.active()
        model.predict(rows)
        sketch = DriftSketch(model.features)
        sketch.update(rows)
        if self.service is None:
            return
        beats = Heartbeats(self.home, f"{self.service.url}/telemetry", token=self.service.device_key)
        beat = beats.build({**self.agent.status(), "device": self.home.name}, sketch)
        since = datetime.now(UTC)
        sent = beats.send(beat)
        if sent:
            self.service.wait_for_log(beat["model"], "telemetry", since, lambda f: beat["id"] in set(f.get("id", ())))
        _out().print(
            f"device {self.home.name}: scored {len(rows)} rows with {model.version}; heartbeat "
            f"{'sent' if sent else 'queued'} (a drift sketch, no rows)"
        )


def print_monitor(outcome: dict[str, Any]) -> None:
    table = Table(title="monitor: production against the champion's reference", title_justify="left")
    for col in ("source", "rows", "drifted", "drifted share", "drifted features", "prediction drift"):
        table.add_column(col, overflow="fold")
    for j in outcome["judgements"]:
        drifted = "n/a" if j["skipped"] else ("[bold red]yes[/]" if j["drifted"] else "[green]no[/]")
        share = "" if j["drifted_share"] is None else f"{j['drifted_share']:.2f}"
        prediction = "n/a" if j["prediction_drift"] is None else ("yes" if j["prediction_drift"] else "no")
        table.add_row(j["source"], str(j["rows"]), drifted, share, ", ".join(j["drifted_features"]), prediction)
    _out().print(table)
    for a in outcome["announcements"]:
        if a["announce"]:
            ask = "asks for a retrain" if a["retrain"] else "no retrain"
            _out().print(f"[yellow]ferry.drift.detected[/] {a['source']}: {escape(a['why'])} ({ask})")
    r = outcome.get("rollout") or {}
    if r.get("decision") in ("promote", "rollback"):
        _out().print(f"[bold]rollout of {r['challenger']}: {r['decision']}[/] ({escape('; '.join(r['reasons']))})")
        for side, ms in r.get("latency_ms", {}).items():
            _out().print(f"  {side} latency: p50 {ms['p50']:.3f} ms, p99 {ms['p99']:.3f} ms")
        for m in r["moved"]:
            _out().print(f"  {m['channel']} -> {m['to']}")


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
    names = ", ".join(s.surface for s in surfaces)
    _out().print(f"[bold green]bit-for-bit identical[/] on {results[0].rows:,} rows across {names}")
    return results


def sample(frame: pd.DataFrame, schema: Schema, n: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    part = frame.head(n).reset_index(drop=True)
    return part, records(part, schema)


def surfaces_scores(
    service: DemoService, output: Path, device: DemoDevice, rows: list[dict[str, Any]], schema: Schema
) -> list[Scores]:
    return [
        online_scores(service, service.key, rows, schema),
        batch_scores(output, rows, schema),
        edge_scores(device.agent.active(), rows, schema),
    ]
