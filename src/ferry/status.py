"""What runs where: the version behind every channel, what each batch output was scored with, what the online
service actually serves (asked over HTTP), what each reporting device runs (from its heartbeats), and the skew.

Batch runs and devices are recorded in the registry's storage, so one URL tells the whole story:

    models/<model>/batch/runs/<time>-<id>.json    one record per finished ``ferry score`` run
    models/<model>/monitor/devices.json           each device's latest heartbeat, kept by the monitor flow
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ferry import storage
from ferry.registry import Registry, layout

__all__ = [
    "Whereabouts",
    "collect",
    "device_cohorts",
    "devices",
    "listed_devices",
    "note_batch_run",
    "remember_devices",
    "to_markdown",
]

BATCH_RUNS_SHOWN = 5
DEVICES_LISTED = 20
"""Devices named one by one (those behind or unhealthy first); a larger fleet is told by cohort (channel and
version), so the status of 10,000 devices is a few lines, not 10,000."""


def note_batch_run(registry: Registry, model: str, *, output: str, version: str, rows: int, scored: int) -> str:
    """Record a finished batch run (where its output is and which version scored it)."""
    fs, root = registry.open_store()
    now = datetime.now(UTC)
    path = f"{layout.batch_runs_dir(root, model)}/{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.json"
    record = {
        "output": output,
        "version": version,
        "rows": rows,
        "scored": scored,
        "at": now.isoformat(timespec="seconds"),
    }
    storage.atomic_write_bytes(fs, path, json.dumps(record).encode())
    return path


def batch_runs(registry: Registry, model: str, *, last: int = BATCH_RUNS_SHOWN) -> list[dict[str, Any]]:
    fs, root = registry.open_store()
    directory = layout.batch_runs_dir(root, model)
    try:
        names = sorted(str(p) for p in fs.ls(directory, detail=False) if str(p).endswith(".json"))
    except FileNotFoundError:
        return []
    out = []
    for name in names[-last:]:
        try:
            out.append(json.loads(storage.read_bytes(fs, name)))
        except ValueError:
            continue
    return out


def remember_devices(registry: Registry, model: str, heartbeats: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge heartbeats into ``monitor/devices.json``: each device's latest one (by its sent_at) is kept."""
    known = devices(registry, model)
    for beat in heartbeats:
        name = str(beat.get("device"))
        if name not in known or str(beat.get("sent_at", "")) >= str(known[name].get("sent_at", "")):
            known[name] = {k: beat.get(k) for k in ("channel", "version", "sha256", "health", "sent_at")}
    fs, root = registry.open_store()
    storage.atomic_write_bytes(
        fs, layout.monitor_path(root, model, "devices.json"), json.dumps(known, indent=1, sort_keys=True).encode()
    )
    return known


def devices(registry: Registry, model: str) -> dict[str, Any]:
    fs, root = registry.open_store()
    try:
        return dict(json.loads(storage.read_bytes(fs, layout.monitor_path(root, model, "devices.json"))))
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}


def ask_online(url: str, api_key: str | None, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """What the service at ``url`` serves (its ``/model``); ``{"error": ...}`` when it cannot say."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url.rstrip("/") + "/model", data=b"{}", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the response open
            return {"error": f"{url} answered {exc.code}"}
    except (OSError, ValueError) as exc:
        return {"error": f"{url} did not answer: {exc}"}


@dataclass
class Whereabouts:
    model: str
    channels: dict[str, str]
    batch: list[dict[str, Any]] = field(default_factory=list)
    online: dict[str, Any] | None = None
    devices: dict[str, Any] = field(default_factory=dict)
    skew: list[str] = field(default_factory=list)

    @property
    def cohorts(self) -> list[dict[str, Any]]:
        return device_cohorts(self.devices)


def _behind(channels: Mapping[str, str], device: Mapping[str, Any]) -> str | None:
    """The version the device's channel points to, when the device runs another one."""
    expected = channels.get(str(device.get("channel")))
    return expected if expected is not None and device.get("version") != expected else None


def _unhealthy(device: Mapping[str, Any]) -> bool:
    return (device.get("health") or {}).get("ok") is False


def device_cohorts(known: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Devices by channel and version: how many, how many unhealthy, and the latest heartbeat."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for d in known.values():
        key = (str(d.get("channel")), str(d.get("version")))
        group = groups.setdefault(
            key, {"channel": key[0], "version": key[1], "devices": 0, "unhealthy": 0, "last_heartbeat": ""}
        )
        group["devices"] += 1
        group["unhealthy"] += _unhealthy(d)
        group["last_heartbeat"] = max(group["last_heartbeat"], str(d.get("sent_at") or ""))
    return [groups[k] for k in sorted(groups)]


def listed_devices(view: Whereabouts, *, limit: int = DEVICES_LISTED) -> list[tuple[str, dict[str, Any]]]:
    """The devices named one by one: all of a small fleet, else the first ``limit`` behind or unhealthy."""
    if len(view.devices) <= limit:
        return sorted(view.devices.items())
    flagged = ((name, d) for name, d in sorted(view.devices.items()) if _behind(view.channels, d) or _unhealthy(d))
    return [item for _, item in zip(range(limit), flagged, strict=False)]


def collect(
    registry: Registry, model: str, *, online_url: str | None = None, api_key: str | None = None
) -> Whereabouts:
    """Gather what runs where for ``model`` and say where it disagrees with the channels."""
    channels = {name: state.version for name, state in sorted(registry.channels(model).items())}
    view = Whereabouts(model, channels, batch_runs(registry, model), None, devices(registry, model))
    champion = channels.get("online/champion")
    if online_url:
        view.online = ask_online(online_url, api_key)
        served = view.online.get("version")
        if "error" in view.online:
            view.skew.append(f"online: {view.online['error']}")
        elif served != channels.get(str(view.online.get("channel", "online/champion"))):
            view.skew.append(f"online serves {served}, but {view.online.get('channel')} points to {champion}")
    batch_channel = channels.get("batch", champion)
    for run in view.batch[-1:]:
        if run.get("version") != batch_channel:
            view.skew.append(f"the latest batch output {run.get('output')} was scored with {run.get('version')}")
    behind = [(name, d, expected) for name, d in sorted(view.devices.items()) if (expected := _behind(channels, d))]
    if len(behind) <= DEVICES_LISTED:
        for name, d, expected in behind:
            view.skew.append(f"device {name} on {d.get('channel')} runs {d.get('version')}, behind {expected}")
        return view
    for cohort in view.cohorts:
        expected = _behind(channels, cohort)
        if expected:
            view.skew.append(
                f"{cohort['devices']} devices on {cohort['channel']} run {cohort['version']}, behind {expected}"
            )
    return view


def to_markdown(view: Whereabouts) -> str:
    lines = [f"# What runs where: {view.model}", "", "| channel | version |", "|---|---|"]
    lines += [f"| {c} | `{v}` |" for c, v in view.channels.items()]
    if view.online is not None:
        served = view.online.get("version") or view.online.get("error")
        lines += ["", f"**online service** serves `{served}`"]
    if view.batch:
        lines += ["", "| batch output | version | rows | at |", "|---|---|---|---|"]
        lines += [
            f"| {b.get('output')} | `{b.get('version')}` | {b.get('scored')} | {b.get('at')} |" for b in view.batch
        ]
    if view.devices:
        lines += ["", "| channel | version | devices | unhealthy | last heartbeat |", "|---|---|---|---|---|"]
        lines += [
            f"| {c['channel']} | `{c['version']}` | {c['devices']} | {c['unhealthy']} | {c['last_heartbeat']} |"
            for c in view.cohorts
        ]
        listed = listed_devices(view)
        lines += ["", "| device | channel | version | healthy | last heartbeat |", "|---|---|---|---|---|"]
        for name, d in listed:
            ok = (d.get("health") or {}).get("ok")
            lines.append(f"| {name} | {d.get('channel')} | `{d.get('version')}` | {ok} | {d.get('sent_at')} |")
        if len(listed) < len(view.devices):
            lines.append(f"\n{len(view.devices) - len(listed)} more devices are counted in their cohorts above.")
    lines += ["", "**skew**: " + ("none" if not view.skew else "")]
    lines += [f"- {s}" for s in view.skew]
    return "\n".join(lines)
