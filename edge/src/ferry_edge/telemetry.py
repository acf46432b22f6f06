"""Heartbeats: version, sha256, health and a compact drift sketch of recent inputs — never raw values.

The sketch keeps, per numeric feature, a bounded uniform sample of recent values (on the device only) from which
the heartbeat sends count, missing count and quantiles; per categorical feature, counts of its declared levels and
one ``other`` count for every other value (free text never leaves the device, nor is it stored). A feature's
distribution (quantiles, or level counts and ``other``) is sent only once the feature has ``min_count`` values since
the last heartbeat (the agent's ``sketch_min_count`` setting); below that the heartbeat carries only ``count`` and
``missing``, so no value of a single row, nor of a small batch, can be read from it.

A collector is either an ``http(s)://`` URL (JSON POST) or a directory (one JSON file per heartbeat, written
atomically) that the monitor flow reads; an HTTP collector may ask for a bearer token (the online service's
``telemetry`` endpoint does). Heartbeats that cannot be delivered wait in a queue directory on disk, capped in bytes
(oldest dropped first), and go out before the next new one. A heartbeat the collector refuses as malformed (400,
413, 422) is dropped rather than retried forever, so it never blocks the ones behind it.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
MIN_COUNT = 20
"""Values of a feature before its distribution is sent (the default of the agent's ``sketch_min_count``)."""
REFUSED = frozenset({400, 413, 422})
"""Answers that mean the collector will never take this heartbeat; anything else (401, 429, 5xx) is retried later."""


class HeartbeatRefused(Exception):
    """The collector refused a heartbeat as malformed; retrying it would not help."""


class DriftSketch:
    """A drift sketch of the inputs of one model. ``features`` are the schema's (name, type, and for categorical
    features their declared ``levels``); a categorical feature without levels is counted only as ``other``."""

    def __init__(
        self,
        features: Sequence[Mapping[str, Any]],
        *,
        sample_size: int = 1000,
        top_k: int = 50,
        min_count: int = MIN_COUNT,
    ) -> None:
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        self.features = list(features)
        self.sample_size = sample_size
        self.top_k = top_k
        self.min_count = min_count
        self.rows = 0
        self._rng = random.Random(0)
        self._seen: dict[str, int] = {}
        self._samples: dict[str, list[float]] = {f["name"]: [] for f in self.features if f["type"] == "numeric"}
        self._missing: Counter[str] = Counter()
        self._levels: dict[str, frozenset[str]] = {
            f["name"]: frozenset(str(v) for v in f.get("levels") or ()) for f in self.features if f["type"] != "numeric"
        }
        self._counts: dict[str, Counter[str]] = {name: Counter() for name in self._levels}
        self._other: Counter[str] = Counter()

    def update(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            self.rows += 1
            for name, sample in self._samples.items():
                v = row.get(name)
                if v is None or (isinstance(v, float) and v != v):
                    self._missing[name] += 1
                    continue
                seen = self._seen.get(name, 0) + 1
                self._seen[name] = seen
                if len(sample) < self.sample_size:
                    sample.append(float(v))
                else:  # reservoir sampling keeps a uniform sample of everything seen
                    j = self._rng.randrange(seen)
                    if j < self.sample_size:
                        sample[j] = float(v)
            for name, counts in self._counts.items():
                v = row.get(name)
                if v is None:
                    self._missing[name] += 1
                elif str(v) in self._levels[name]:
                    counts[str(v)] += 1
                else:  # not a declared level: counted, never kept
                    self._other[name] += 1

    def state(self) -> dict[str, Any]:
        """Everything needed to continue the sketch in another process (kept on the device, never sent)."""
        return {
            "rows": self.rows,
            "seen": self._seen,
            "samples": self._samples,
            "missing": dict(self._missing),
            "counts": {k: dict(v) for k, v in self._counts.items()},
            "other": dict(self._other),
        }

    @classmethod
    def load(cls, path: Path, features: Sequence[Mapping[str, Any]], **options: Any) -> DriftSketch:
        """The sketch saved at ``path``, or a new one when there is none or it was another model's."""
        sketch = cls(features, **options)
        try:
            saved = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return sketch
        if set(saved.get("samples", {})) != set(sketch._samples) or set(saved.get("counts", {})) != set(sketch._counts):
            return sketch  # another model's features: start afresh
        sketch.rows = int(saved["rows"])
        sketch._seen = {k: int(v) for k, v in saved["seen"].items()}
        sketch._samples = {k: [float(x) for x in v] for k, v in saved["samples"].items()}
        sketch._missing = Counter(saved["missing"])
        sketch._other = Counter(saved.get("other", {}))
        for name, counts in saved["counts"].items():
            for value, n in counts.items():  # a sketch saved by an older agent may hold raw values
                if value in sketch._levels[name]:
                    sketch._counts[name][value] += int(n)
                else:
                    sketch._other[name] += int(n)
        return sketch

    def save(self, path: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.state(), fh)
        os.replace(tmp, path)

    def to_dict(self) -> dict[str, Any]:
        """What a heartbeat carries: counts always, a feature's distribution only from ``min_count`` values on."""
        numeric = {}
        for name, sample in self._samples.items():
            count = self._seen.get(name, 0)
            qs = np.quantile(np.asarray(sample), QUANTILES).tolist() if sample and count >= self.min_count else []
            numeric[name] = {
                "count": count,
                "missing": self._missing[name],
                "quantiles": dict(zip([f"p{int(q * 100)}" for q in QUANTILES], qs, strict=False)),
            }
        categorical = {}
        for name, counts in self._counts.items():
            count = sum(counts.values()) + self._other[name]
            if count >= self.min_count:
                top = dict(counts.most_common(self.top_k))
                other = count - sum(top.values())
            else:
                top, other = {}, 0
            categorical[name] = {"count": count, "missing": self._missing[name], "counts": top, "other": other}
        return {"rows": self.rows, "numeric": numeric, "categorical": categorical}


class Heartbeats:
    """Build, send and queue heartbeats for one agent home."""

    def __init__(
        self,
        home: Path,
        collector: str,
        *,
        token: str | None = None,
        queue_cap_bytes: int = 1 << 20,
        timeout_s: float = 5.0,
        min_count: int = MIN_COUNT,
    ) -> None:
        self.home = Path(home)
        self.collector = collector
        self.token = token
        self.refused: list[str] = []
        self.queue = self.home / "heartbeats"
        self.queue_cap_bytes = queue_cap_bytes
        self.timeout_s = timeout_s
        self.min_count = min_count
        self.queue.mkdir(parents=True, exist_ok=True)

    def build(self, status: Mapping[str, Any], sketch: DriftSketch | None) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "device": status.get("device") or os.uname().nodename,
            "model": status.get("model"),
            "channel": status.get("channel"),
            "version": status.get("active_version"),
            "sha256": status.get("active_sha256"),
            "health": {
                "ok": not status.get("last_error"),
                "last_error": status.get("last_error"),
                "stale": status.get("stale"),
            },
            "sent_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "sketch": sketch.to_dict() if sketch is not None else None,
        }

    def _deliver(self, body: bytes) -> None:
        if self.collector.startswith(("http://", "https://")):
            headers = {"Content-Type": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            request = urllib.request.Request(self.collector, data=body, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if response.status >= 300:
                        raise OSError(f"collector answered {response.status}")
            except urllib.error.HTTPError as exc:
                with exc:  # an HTTPError holds the response open
                    detail = exc.read()[:300].decode(errors="replace")
                if exc.code in REFUSED:
                    raise HeartbeatRefused(f"collector answered {exc.code}: {detail}") from exc
                raise OSError(f"collector answered {exc.code}: {detail}") from exc
            return
        directory = Path(self.collector.removeprefix("file://"))
        directory.mkdir(parents=True, exist_ok=True)
        name = json.loads(body)["id"]
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".hb.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.replace(tmp, directory / f"{name}.json")

    def _enqueue(self, body: bytes) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        (self.queue / f"{stamp}-{uuid.uuid4().hex[:6]}.json").write_bytes(body)
        queued = sorted(self.queue.glob("*.json"))
        total = sum(p.stat().st_size for p in queued)
        while queued and total > self.queue_cap_bytes:  # the cap keeps the newest
            oldest = queued.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink()

    def _scrubbed(self, body: bytes) -> bytes:
        """A queued heartbeat held to this agent's rules: one an older agent queued may carry quantiles of a few rows
        or raw categories; they are dropped, the counts kept."""
        try:
            beat = json.loads(body)
            sketch = beat.get("sketch") or {}
            for part in (sketch.get("numeric") or {}).values():
                if int(part.get("count", 0)) < self.min_count:
                    part["quantiles"] = {}
            for part in (sketch.get("categorical") or {}).values():
                if "count" not in part or int(part["count"]) < self.min_count:  # "count" marks this agent's sketches
                    part.update(counts={}, other=0)
        except (ValueError, TypeError, AttributeError):
            return body  # not ours to judge: the collector refuses what it cannot read
        return json.dumps(beat, sort_keys=True).encode()

    def queued(self) -> int:
        return len(list(self.queue.glob("*.json")))

    def send(self, heartbeat: Mapping[str, Any]) -> bool:
        """Deliver queued heartbeats, oldest first, then this one; on failure queue it. True when this one went out.

        Heartbeats the collector refuses as malformed are dropped, and their reasons kept in ``refused``.
        """
        body = json.dumps(heartbeat, sort_keys=True).encode()
        try:
            for path in sorted(self.queue.glob("*.json")):
                try:
                    self._deliver(self._scrubbed(path.read_bytes()))
                except HeartbeatRefused as exc:
                    self.refused.append(str(exc))
                path.unlink()
            self._deliver(body)
        except HeartbeatRefused as exc:
            self.refused.append(str(exc))
            return False
        except OSError:
            self._enqueue(body)
            return False
        return True
