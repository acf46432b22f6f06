"""``ferry-edge``: init, sync, predict, explain and status for a device (argparse only: the agent stays
dependency-light)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ferry_edge.agent import Agent
from ferry_edge.errors import EdgeError, InputError
from ferry_edge.model import EdgeModel


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home or os.environ.get("FERRY_EDGE_HOME") or Path.home() / ".ferry-edge")


def _rows_csv(stream: TextIO, numeric: set[str]) -> Iterator[dict[str, Any]]:
    for i, raw in enumerate(csv.DictReader(stream)):
        row: dict[str, Any] = {}
        for key, value in raw.items():
            if key in numeric:
                if value is None or value.strip() == "":
                    row[key] = None
                else:
                    try:
                        row[key] = float(value)
                    except ValueError:
                        raise InputError(key, f"expected a number, got {value!r}", row=i) from None
            else:
                row[key] = None if value in (None, "") else value
        yield row


def _rows_jsonl(stream: TextIO) -> Iterator[dict[str, Any]]:
    for i, line in enumerate(stream):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InputError("<line>", f"not valid JSON: {exc}", row=i) from None
            if not isinstance(row, dict):
                raise InputError("<line>", "each line must be a JSON object", row=i)
            yield row


def cmd_init(args: argparse.Namespace) -> int:
    Agent.init(
        _home(args), repo_url=args.repo, model=args.model, channel=args.channel, trusted_root=args.root.read_bytes()
    )
    print(f"initialised {_home(args)} for {args.model} on {args.channel} from {args.repo}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    home = _home(args)
    if args.repo or args.root:
        if not (args.repo and args.root and args.model):
            print("error: first sync needs --repo, --root and --model (or run `ferry-edge init`)", file=sys.stderr)
            return 2
        root = args.root.read_bytes()
        Agent.init(home, repo_url=args.repo, model=args.model, channel=args.channel, trusted_root=root)
    agent = Agent(home)
    _ = agent.config  # a home that is not set up (or a bad setting) is an error of its own: no sync was attempted
    try:
        result = agent.sync()
    except EdgeError as exc:
        print(json.dumps(sync_report(agent, changed=False)))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(sync_report(agent, changed=result.changed)))
    return 0


def sync_report(agent: Agent, *, changed: bool) -> dict[str, Any]:
    """What ``sync`` prints, in one shape whether it succeeded or failed (``failure`` says why, ``None`` if not)."""
    status = agent.status()
    return {
        "ok": status["failure"] is None,
        "changed": changed,
        "version": status["active_version"],
        "sha256": status["active_sha256"],
        "stale": status["stale"],
        "failure": status["failure"],
    }


def cmd_retry(args: argparse.Namespace) -> int:
    """Clear rejected and postponed bundles (all, or the one named) so that the next sync tries them again."""
    cleared = Agent(_home(args)).retry(args.bundle)
    print(json.dumps({"cleared": cleared}, indent=2))
    return 0


def _read_rows(args: argparse.Namespace, model: EdgeModel) -> list[dict[str, Any]]:
    """The rows of ``args.input`` (a file, or - for standard input), CSV or JSON lines."""
    stream = open(args.input) if args.input != "-" else sys.stdin  # noqa: SIM115
    try:
        fmt = args.format or ("csv" if str(args.input).endswith(".csv") else "jsonl")
        numeric = {f["name"] for f in model.features if f["type"] == "numeric"}
        return list(_rows_csv(stream, numeric) if fmt == "csv" else _rows_jsonl(stream))
    finally:
        if stream is not sys.stdin:
            stream.close()


def cmd_predict(args: argparse.Namespace) -> int:
    agent = Agent(_home(args))
    model = agent.active()
    rows = _read_rows(args, model)
    predictions = model.predict(rows)
    from ferry_edge.telemetry import DriftSketch

    sketch_path = _home(args) / "sketch.json"
    sketch = DriftSketch.load(sketch_path, model.features, min_count=agent.config["sketch_min_count"])
    sketch.update(rows)
    sketch.save(sketch_path)
    for p in predictions:
        print(json.dumps(p.to_dict()))
    return 0


def _top_k(raw: str | None) -> int | None:
    """``--top-k`` as given: a whole number, checked against the features by the model (InputError names it)."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InputError("top_k", f"must be a whole number, got {raw!r}") from None


def cmd_explain(args: argparse.Namespace) -> int:
    """One JSON explanation per row (the shape every surface returns); rows feed no drift sketch."""
    model = Agent(_home(args)).active()
    top_k = _top_k(args.top_k)
    model.explain([], target=args.target, top_k=top_k)  # a version without explain.npz, bad K or class: say so first
    for found in model.explain(_read_rows(args, model), target=args.target, top_k=top_k):
        print(json.dumps(found))
    return 0


def cmd_heartbeat(args: argparse.Namespace) -> int:
    """Send one heartbeat (queued on disk when the collector is unreachable); the sketch then starts afresh."""
    from ferry_edge.telemetry import DriftSketch, Heartbeats

    home = _home(args)
    agent = Agent(home)
    sketch = None
    sketch_path = home / "sketch.json"
    with contextlib.suppress(EdgeError):
        sketch = DriftSketch.load(sketch_path, agent.active().features, min_count=agent.config["sketch_min_count"])
    token = args.token or os.environ.get("FERRY_EDGE_COLLECTOR_TOKEN")
    beats = Heartbeats(home, args.collector, token=token, min_count=agent.config["sketch_min_count"])
    sent = beats.send(beats.build(agent.status(), sketch))
    sketch_path.unlink(missing_ok=True)
    print(json.dumps({"sent": sent, "queued": beats.queued(), "refused": beats.refused}))
    return 0 if not beats.refused else 1


def cmd_run(args: argparse.Namespace) -> int:
    from ferry_edge.daemon import Schedule, run

    schedule = Schedule(interval_s=args.interval, jitter=args.jitter, max_backoff_s=args.max_backoff)
    return run(Agent(_home(args)), schedule)


def cmd_status(args: argparse.Namespace) -> int:
    print(json.dumps(Agent(_home(args)).status(), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferry-edge", description="ferry's device agent.")
    p.add_argument("--home", help="agent state directory (default: $FERRY_EDGE_HOME or ~/.ferry-edge)")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="provision: repository URL, model, channel and the trusted root")
    init.add_argument("--repo", required=True)
    init.add_argument("--model", required=True)
    init.add_argument("--channel", default="edge/stable")
    init.add_argument("--root", type=Path, required=True, help="the repository's 1.root.json, given out of band")
    init.set_defaults(func=cmd_init)
    sync = sub.add_parser("sync", help="verify, self-test and install the channel's current bundle")
    sync.add_argument("--repo")
    sync.add_argument("--model")
    sync.add_argument("--channel", default="edge/stable")
    sync.add_argument("--root", type=Path)
    sync.set_defaults(func=cmd_sync)
    predict = sub.add_parser("predict", help="score CSV or JSON-lines rows offline with the active model")
    predict.add_argument("input", nargs="?", default="-", help="file, or - for standard input")
    predict.add_argument("--format", choices=["csv", "jsonl"])
    predict.set_defaults(func=cmd_predict)
    explain = sub.add_parser("explain", help="explain CSV or JSON-lines rows offline: per-feature attributions")
    explain.add_argument("input", nargs="?", default="-", help="file, or - for standard input")
    explain.add_argument("--format", choices=["csv", "jsonl"])
    explain.add_argument("--top-k", help="features named in each row's top list (default 5, at most the features)")
    explain.add_argument("--class", dest="target", help="the class to explain (default: the class predicted)")
    explain.set_defaults(func=cmd_explain)
    beat = sub.add_parser("heartbeat", help="send version, health and a drift sketch to a collector")
    beat.add_argument("--collector", required=True, help="http(s) URL (JSON POST) or a directory")
    beat.add_argument("--token", help="bearer token for an HTTP collector (default: $FERRY_EDGE_COLLECTOR_TOKEN)")
    beat.set_defaults(func=cmd_heartbeat)
    run = sub.add_parser("run", help="sync on an interval with jitter and backoff until SIGTERM")
    run.add_argument("--interval", type=float, default=300.0, help="seconds between syncs (default 300)")
    run.add_argument("--jitter", type=float, default=0.1, help="relative jitter of each wait (default 0.1)")
    run.add_argument("--max-backoff", type=float, default=3600.0, help="longest wait while offline (default 3600)")
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="active and previous version, last sync and last failure")
    status.set_defaults(func=cmd_status)
    retry = sub.add_parser("retry", help="try rejected or postponed bundles again at the next sync")
    retry.add_argument("bundle", nargs="?", help="a version or sha256 prefix (default: every one)")
    retry.set_defaults(func=cmd_retry)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command != "init":  # a start: collect what a killed install left behind (unless one is running)
            Agent(_home(args)).collect_leftovers()
        return int(args.func(args))
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
