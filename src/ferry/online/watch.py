"""Intrusion signals: read the online service's refusal counters and decide which ``ferry.security.*`` events to send.

The service counts every refusal (``ferry_online_refused_total{status,reason,key}``), every client that crossed the
refusal threshold (``ferry_online_suspect_clients_total``) and every 401 it held in the tarpit, on ``/metrics``. The
``security-watch`` flow (``flows/security.py``) reads them every minute, keeps the last reading in the registry
(``models/<model>/monitor/security.json``) and, from the difference, announces:

- ``ferry.security.refusals`` when at least ``refusals`` requests were refused since the last reading (with the
  counts by status and reason, and the keys refused most);
- ``ferry.security.suspects`` when at least ``suspects`` new clients became suspects.

This module decides; the flow emits (the core never imports Prefect). A service that restarted reads lower than
before: its counters are then taken as they are, from zero.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ferry import storage
from ferry.errors import ConfigError
from ferry.online.settings import WatchSettings
from ferry.registry import Registry, layout

__all__ = ["Alert", "Reading", "WatchSettings", "alerts", "check", "fetch", "parse"]

REFUSALS = "ferry.security.refusals"
SUSPECTS = "ferry.security.suspects"

_SAMPLE = re.compile(r'^ferry_online_refused_total\{status="(\d+)",reason="([^"]*)",key="([^"]*)"\} (\d+)$')


@dataclass(frozen=True)
class Reading:
    """The service's security counters at one time."""

    refused: dict[tuple[int, str, str], int] = field(default_factory=dict)  # (status, reason, key) -> count
    suspects: int = 0
    tarpitted: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "refused": [[s, r, k, n] for (s, r, k), n in sorted(self.refused.items())],
            "suspects": self.suspects,
            "tarpitted": self.tarpitted,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Reading:
        refused = {(int(s), str(r), str(k)): int(n) for s, r, k, n in obj.get("refused", [])}
        return cls(refused, int(obj.get("suspects", 0)), int(obj.get("tarpitted", 0)))


@dataclass(frozen=True)
class Alert:
    """One event to emit: its name, a one-line summary and its payload."""

    event: str
    summary: str
    payload: dict[str, Any]


def parse(text: str) -> Reading:
    """The security counters in the Prometheus text of the service's ``/metrics``."""
    refused: dict[tuple[int, str, str], int] = {}
    suspects = tarpitted = 0
    for line in text.splitlines():
        if line.startswith("ferry_online_refused_total{"):
            found = _SAMPLE.match(line)
            if found:
                refused[(int(found[1]), found[2], found[3])] = int(found[4])
        elif line.startswith("ferry_online_suspect_clients_total "):
            suspects = int(float(line.split()[1]))
        elif line.startswith("ferry_online_tarpitted_total "):
            tarpitted = int(float(line.split()[1]))
    return Reading(refused, suspects, tarpitted)


def fetch(url: str, settings: WatchSettings, *, timeout_s: float = 10.0) -> Reading:
    """Read ``url`` (the service's ``/metrics``), with the metrics key and CA of ``settings``."""
    key = settings.metrics_key
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}
    context = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            return parse(response.read().decode("utf-8", errors="replace"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the service's metrics at {url}: {exc}") from exc


def _since(before: Reading | None, now: Reading) -> tuple[Counter[tuple[int, str, str]], int]:
    """Refusals and new suspects between two readings; a restarted service (lower counters) counts from zero."""
    restarted = before is not None and (
        now.suspects < before.suspects or any(now.refused.get(k, 0) < n for k, n in before.refused.items())
    )
    if before is None or restarted:
        return Counter(now.refused), now.suspects if before is not None else 0
    return Counter({k: n - before.refused.get(k, 0) for k, n in now.refused.items()}), now.suspects - before.suspects


def alerts(before: Reading | None, now: Reading, settings: WatchSettings, *, service: str) -> list[Alert]:
    """The events the change from ``before`` to ``now`` asks for (none on the first reading, which is the base)."""
    if before is None:
        return []
    refused, suspects = _since(before, now)
    total = refused.total()
    out = []
    if total >= settings.refusals:
        by_reason: Counter[str] = Counter()
        by_key: Counter[str] = Counter()
        for (status, reason, key), n in refused.items():
            by_reason[f"{status} {reason}"] += n
            by_key[key] += n
        out.append(
            Alert(
                REFUSALS,
                f"{total} requests refused by {service} since the last reading (threshold {settings.refusals})",
                {
                    "service": service,
                    "refused": total,
                    "by_reason": dict(by_reason.most_common(20)),
                    "by_key": dict(by_key.most_common(10)),
                },
            )
        )
    if suspects >= settings.suspects:
        out.append(
            Alert(
                SUSPECTS,
                f"{suspects} new suspect clients at {service} (refused again and again; threshold {settings.suspects})",
                {"service": service, "new_suspects": suspects, "tarpitted": now.tarpitted},
            )
        )
    return out


def check(registry_url: str, model: str, metrics_url: str, settings: WatchSettings | None = None) -> list[Alert]:
    """Read the service's counters, compare them with the last reading kept in the registry, keep the new one, and
    return the events to emit."""
    settings = settings or WatchSettings()
    now = fetch(metrics_url, settings)
    fs, root = Registry(registry_url).open_store()
    path = layout.monitor_path(root, model, "security.json")
    try:
        before: Reading | None = Reading.from_json(json.loads(storage.read_bytes(fs, path)))
    except FileNotFoundError:
        before = None
    except (ValueError, TypeError, KeyError):
        before = None  # an unreadable reading is replaced: the next run compares with this one
    found = alerts(before, now, settings, service=metrics_url)
    storage.atomic_write_bytes(fs, path, (json.dumps(now.to_json(), sort_keys=True) + "\n").encode())
    return found
