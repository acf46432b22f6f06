"""What the monitor keeps between runs, in the registry's storage: its state, its history and its reports.

State (cursors, what was announced, the last retrain request) is ``monitor/state.json``; every judgement is a line
of ``monitor/history.jsonl``; reports are ``monitor/reports/<run>-<source>.html`` (all under ``models/<model>/``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ferry import storage
from ferry.errors import FerryError
from ferry.monitor.sources import _fs
from ferry.registry import layout
from ferry.registry.store import Registry

__all__ = ["MonitorState", "append_history", "history", "keep_report"]


@dataclass
class MonitorState:
    """What the monitor remembers between runs, kept in ``models/<model>/monitor/state.json``."""

    cursors: dict[str, str] = field(default_factory=dict)
    announced: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> {fingerprint, at}
    last_retrain_request: str | None = None

    @classmethod
    def load(cls, registry: Registry, model: str) -> MonitorState:
        fs, root = _fs(registry)
        try:
            raw = json.loads(storage.read_bytes(fs, layout.monitor_path(root, model, "state.json")))
        except FileNotFoundError:
            return cls()
        except ValueError as exc:
            raise FerryError(
                f"monitor state of {model!r} is not valid JSON ({exc}); delete it to start afresh"
            ) from exc
        return cls(
            cursors=dict(raw.get("cursors", {})),
            announced=dict(raw.get("announced", {})),
            last_retrain_request=raw.get("last_retrain_request"),
        )

    def save(self, registry: Registry, model: str) -> None:
        fs, root = _fs(registry)
        data = json.dumps(asdict(self), indent=2, sort_keys=True).encode()
        storage.atomic_write_bytes(fs, layout.monitor_path(root, model, "state.json"), data)


def keep_report(registry: Registry, model: str, html: Path) -> str:
    """Copy an Evidently report (and its snapshot JSON) into ``monitor/reports/``; returns where it now is."""
    fs, root = _fs(registry)
    target = layout.monitor_path(root, model, "reports", html.name)
    storage.atomic_write_bytes(fs, target, html.read_bytes())
    snapshot = html.with_suffix(".evidently.json")
    if snapshot.exists():
        storage.atomic_write_bytes(fs, target.removesuffix(".html") + ".evidently.json", snapshot.read_bytes())
    return target if storage.is_local(fs) else fs.unstrip_protocol(target)


def append_history(registry: Registry, model: str, entries: Sequence[Mapping[str, Any]]) -> None:
    """Add judgements to ``monitor/history.jsonl`` (rewritten atomically: the file stays small, one line a source
    and run)."""
    if not entries:
        return
    fs, root = _fs(registry)
    path = layout.monitor_path(root, model, "history.jsonl")
    try:
        old = storage.read_bytes(fs, path)
    except FileNotFoundError:
        old = b""
    new = "".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in entries).encode()
    storage.atomic_write_bytes(fs, path, old + new)


def history(registry: Registry, model: str) -> list[dict[str, Any]]:
    fs, root = _fs(registry)
    try:
        text = storage.read_bytes(fs, layout.monitor_path(root, model, "history.jsonl")).decode()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
