"""Edge heartbeats received by the online service (``POST /telemetry``), checked and logged for the monitor flow.

The payload is what the edge agent's ``ferry_edge.telemetry.Heartbeats.build`` sends: the device, the model version
and bundle sha256 it runs, its health, and a drift sketch of recent inputs (counts, missing counts, quantiles and
top categories; never raw rows). :class:`Heartbeat` validates it with bounded sizes; a malformed heartbeat gets 422
naming the field (the agent then drops it instead of retrying it forever). Fields the model does not know are
ignored and not stored, so an agent newer than the service still reports.

Accepted heartbeats are buffered and written as Parquet files next to the prediction logs, read by the monitor flow::

    models/<model>/online/telemetry/<date>/<time>-<uuid>.parquet

One row per heartbeat: ``id``, ``device``, ``model``, ``channel``, ``version``, ``sha256``, ``ok``, ``last_error``,
``stale``, ``sent_at``, ``received_at``, ``rows`` (rows the sketch covers) and ``sketch`` (the sketch as JSON text).
An agent re-sends a heartbeat whose answer it did not see, so readers deduplicate by ``id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ferry.online.logs import ParquetLog
from ferry.online.records import RequestRejected
from ferry.registry import layout

__all__ = ["Collector", "Heartbeat", "TelemetryAck", "TelemetryLog", "check_heartbeat"]

MAX_FEATURES = 1000
MAX_CATEGORIES = 1000

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Count = Annotated[int, Field(ge=0, le=10**15)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
QuantileName = Annotated[str, StringConstraints(pattern=r"^p[0-9]{1,2}$")]


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class NumericSketch(_Part):
    count: Count = Field(description="Values seen (not missing).")
    missing: Count = Field(description="Missing values seen.")
    quantiles: dict[QuantileName, Finite] = Field(
        max_length=101,
        description="p5, p25, p50, ... of a sample; empty until the device has enough values to send them without "
        "revealing a row (the agent's sketch_min_count).",
    )


class CategoricalSketch(_Part):
    count: Count | None = Field(
        default=None, description="Values seen (not missing); older agents leave it out (counts + other)."
    )
    missing: Count = Field(description="Missing values seen.")
    counts: dict[Annotated[str, StringConstraints(max_length=200)], Count] = Field(
        max_length=MAX_CATEGORIES,
        description="Counts of the most frequent declared levels (empty until the device has enough values).",
    )
    other: Count = Field(description="Values outside the listed categories.")


class Sketch(_Part):
    rows: Count = Field(description="Rows the sketch covers.")
    numeric: dict[Name, NumericSketch] = Field(max_length=MAX_FEATURES)
    categorical: dict[Name, CategoricalSketch] = Field(max_length=MAX_FEATURES)


class Health(_Part):
    ok: bool = Field(description="False when the agent's last sync or self-test failed.")
    last_error: str | None = Field(default=None, max_length=8192)
    stale: bool | None = Field(default=None, description="True when the agent serves a bundle it could not refresh.")


class Heartbeat(_Part):
    """One heartbeat of an edge device, as ``ferry_edge.telemetry.Heartbeats.build`` makes it."""

    id: str = Field(pattern=r"^[0-9a-f]{32}$", description="Unique id of this heartbeat (uuid4 hex).")
    device: Name = Field(description="The device's name.")
    model: str | None = Field(default=None, max_length=64, description="The model the device runs.")
    channel: str | None = Field(default=None, max_length=100, description="The edge channel it follows.")
    version: str | None = Field(default=None, max_length=64, description="The model version it runs.")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of its bundle.")
    health: Health
    sent_at: datetime = Field(description="When the device built the heartbeat (ISO 8601).")
    sketch: Sketch | None = Field(default=None, description="Drift sketch of recent inputs; never raw rows.")


class TelemetryAck(BaseModel):
    stored: int = Field(description="How many heartbeats were accepted (buffered for the monitor flow).")


def check_heartbeat(payload: Any, *, model: str) -> Heartbeat:
    """A valid heartbeat of ``model``, or RequestRejected (422) naming the first field at fault."""
    if not isinstance(payload, Mapping):
        raise RequestRejected(422, None, "heartbeat", f"expected a JSON object, got {type(payload).__name__}")
    try:
        beat = Heartbeat.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        raise RequestRejected(422, where, first["type"], first["msg"]) from None
    if beat.model is not None and beat.model != model:
        raise RequestRejected(
            422, "model", "served_model", f"this service collects heartbeats of model {model!r}, not {beat.model!r}"
        )
    return beat


class TelemetryLog(ParquetLog):
    """Accepted heartbeats, buffered and written under ``models/<model>/online/telemetry`` (durable with
    ``wal_dir``: a heartbeat answered 200 is on local disk, and the device will not send it again)."""

    def __init__(
        self, registry_url: str, model: str, *, buffer_rows: int = 1000, wal_dir: str | Path | None = None
    ) -> None:
        super().__init__(
            registry_url, layout.online_dir("", model, "telemetry"), buffer_rows=buffer_rows, wal_dir=wal_dir
        )

    def record(self, beat: Heartbeat) -> int:
        sketch = beat.sketch
        self.append(
            [
                {
                    "id": beat.id,
                    "device": beat.device,
                    "model": beat.model,
                    "channel": beat.channel,
                    "version": beat.version,
                    "sha256": beat.sha256,
                    "ok": beat.health.ok,
                    "last_error": beat.health.last_error,
                    "stale": beat.health.stale,
                    "sent_at": beat.sent_at.isoformat(),
                    "received_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                    "rows": sketch.rows if sketch is not None else None,
                    "sketch": sketch.model_dump_json() if sketch is not None else None,
                }
            ]
        )
        return 1


class Collector:
    """Checks heartbeats of ``model`` and logs the accepted ones; thread-safe."""

    def __init__(self, log: TelemetryLog, model: str) -> None:
        self.log = log
        self.model = model

    def accept(self, payload: Any) -> TelemetryAck:
        """Store one heartbeat; RequestRejected (422) names the field at fault."""
        return TelemetryAck(stored=self.log.record(check_heartbeat(payload, model=self.model)))
