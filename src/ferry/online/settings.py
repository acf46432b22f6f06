"""Settings of the online service (``FERRY_ONLINE_`` environment). Reading them does nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Scope = Literal["predict", "explain", "feedback", "telemetry", "admin", "metrics"]
SCOPES: tuple[Scope, ...] = ("predict", "explain", "feedback", "telemetry", "admin", "metrics")


class ApiKeyEntry(BaseModel):
    """One API key as configured: only the sha256 of the key is stored, never the key itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="Who holds the key (shown in logs, never the key).")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the key's UTF-8 bytes.")
    scopes: tuple[Scope, ...] = Field(
        min_length=1, description="What the key may do: predict, explain, feedback, telemetry, admin, metrics."
    )
    revoked: bool = Field(default=False, description="A revoked key is refused with 401.")
    expires_at: AwareDatetime | None = Field(
        default=None, description="From this time on the key is refused with 401 (ISO 8601 with a time zone)."
    )
    rate_per_s: float | None = Field(
        default=None, gt=0, le=1_000_000, description="Requests per second the key may make (a token bucket)."
    )
    burst: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Requests the key may make at once above its rate."
    )
    daily_quota: int | None = Field(
        default=None, ge=1, le=10**12, description="Requests the key may make per UTC day (per service process)."
    )


class OnlineSettings(BaseSettings):
    """How the online service finds its model and guards its endpoints."""

    model_config = SettingsConfigDict(env_prefix="FERRY_ONLINE_", extra="ignore")

    model: str | None = Field(
        default=None,
        max_length=64,
        description="Model to serve; default: the only model in the registry.",
    )
    channel: str = Field(
        default="online/champion", min_length=1, max_length=100, description="Channel whose version is served."
    )
    version: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{4,16}$",
        description="Serve exactly this version (id or unique prefix) instead of following the channel.",
    )
    routing: Literal["champion", "shadow", "canary", "ab"] = Field(
        default="champion",
        description="champion alone, or with the challenger: shadow (scores, never answers), canary (a random "
        "share of requests) or ab (a sticky share of route keys).",
    )
    challenger_channel: str = Field(
        default="online/challenger", min_length=1, max_length=100, description="Channel of the challenger."
    )
    challenger_percent: float = Field(
        default=10.0, ge=0, le=100, description="Share of requests (canary) or of route keys (ab) for the challenger."
    )
    poll_interval_s: float = Field(
        default=2.0, ge=0.05, le=3600, description="How often the channel pointer is read for a new version."
    )
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, le=1 << 30, description="Largest request body; larger ones get 413."
    )
    max_records: int = Field(default=1000, ge=1, le=100_000, description="Most records one predict request may hold.")
    max_in_flight: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="Requests handled at once, counted once their body has arrived; more get 503 with Retry-After "
        "at once (BentoML's own concurrency limit is off: the service sheds).",
    )
    max_in_flight_per_key: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Requests one API key may have in the service at once, its body still arriving included; more "
        "get 429 at once. Default: half of max_in_flight, so that no one key can take every slot.",
    )
    body_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Longest wait for a request body to arrive in full; a slower one gets 408 and frees its place.",
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="BentoML's limit on the time to the start of an answer (504 after it); longer than "
        "body_timeout_s. Every request holds one of BentoML's timers until this has passed, answered or not, so a "
        "shorter limit costs less per request; raise it for /explain requests of many records.",
    )
    retry_after_s: int = Field(default=1, ge=1, le=3600, description="Retry-After of a shed request, in seconds.")
    intra_op_threads: int = Field(default=1, ge=1, le=64, description="onnxruntime intra-op threads per session.")
    prediction_sample_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of predictions written to the prediction log (0 = none)."
    )
    log_buffer_rows: int = Field(
        default=1000, ge=1, le=1_000_000, description="Rows a log buffers before it writes a Parquet file."
    )
    log_flush_interval_s: float = Field(
        default=30.0, gt=0, le=3600, description="Buffered log rows are written at least this often."
    )
    suspect_refusals: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="Refusals of one client within suspect_window_s that make it a suspect (logged and counted).",
    )
    suspect_window_s: float = Field(default=60.0, gt=0, le=86_400, description="Window of suspect_refusals.")
    tarpit_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long a 401 to a suspect client is held before it is sent, with Connection: close "
        "(0: never); requests with a valid key never wait.",
    )
    tarpit_max: int = Field(
        default=256, ge=1, le=100_000, description="Most 401s held in the tarpit at once; more are answered at once."
    )
    metrics_require_key: bool = Field(
        default=False, description="/metrics answers only a key with the metrics scope (the probes stay open)."
    )
    docs_require_key: bool = Field(
        default=True,
        description="The API docs (/, /docs.json and their assets) answer only a valid key (any scope); false opens "
        "them to anyone who can reach the service.",
    )
    id_key: SecretStr | None = Field(
        default=None,
        description="Key that signs prediction ids (shared by every replica); default: a random key kept in the "
        "registry at models/<model>/online/prediction-ids.key, made on first start.",
    )
    wal_dir: Path | None = Field(
        default=None,
        description="Local directory of the write-ahead files that make acknowledged feedback and heartbeats "
        "durable; default: <registry>/models/<model>/online/wal for a local registry, else "
        "$XDG_STATE_HOME/ferry/wal/<model> (~/.local/state/...).",
    )
    ssl_certfile: Path | None = Field(
        default=None,
        description="PEM certificate (chain) of the service: with ssl_keyfile, `ferry serve` serves HTTPS "
        "(BentoML's --ssl-certfile).",
    )
    ssl_keyfile: Path | None = Field(default=None, description="PEM private key of ssl_certfile (unencrypted).")
    ssl_ca_certs: Path | None = Field(
        default=None,
        description="PEM CA certificates: with TLS on, every client must present a certificate signed by one of "
        "them (mutual TLS).",
    )
    api_keys: tuple[ApiKeyEntry, ...] = Field(
        default=(),
        description='API keys as JSON: [{"name": ..., "sha256": ..., "scopes": ["predict"]}]. None: every '
        "guarded endpoint answers 401.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="A JSON file of more API keys in the same form, read again when it changes (rotation and "
        "revocation without a restart).",
    )

    @model_validator(mode="after")
    def _request_outlasts_body(self) -> OnlineSettings:
        if self.request_timeout_s <= self.body_timeout_s:
            raise ValueError(
                f"request_timeout_s ({self.request_timeout_s:g}) must be longer than body_timeout_s "
                f"({self.body_timeout_s:g}): a stalled body must get its 408 before BentoML's 504"
            )
        return self


def per_key_limit(settings: OnlineSettings) -> int:
    """Requests one key may have in the service at once (see :attr:`OnlineSettings.max_in_flight_per_key`)."""
    if settings.max_in_flight_per_key is not None:
        return settings.max_in_flight_per_key
    return max(1, settings.max_in_flight // 2)


class WatchSettings(BaseSettings):
    """When refusals and suspect clients are worth an event."""

    model_config = SettingsConfigDict(env_prefix="FERRY_SECURITY_", extra="ignore")

    refusals: int = Field(
        default=100, ge=1, le=10**9, description="Refused requests between two readings that make an event."
    )
    suspects: int = Field(
        default=1, ge=1, le=10**6, description="New suspect clients between two readings that make an event."
    )
    metrics_key: SecretStr | None = Field(
        default=None, description="API key with the metrics scope, when the service's /metrics requires one."
    )
    ca_file: str | None = Field(default=None, description="CA (PEM) to trust when /metrics is served over HTTPS.")
