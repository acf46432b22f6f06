"""Settings of batch scoring (``FERRY_BATCH_*``).

In a module of its own so that the run, the sampler and the drift check each read it without importing one another.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BatchSettings"]


class BatchSettings(BaseSettings):
    """How batch scoring picks its model and sizes its work."""

    model_config = SettingsConfigDict(env_prefix="FERRY_BATCH_", extra="ignore")

    channel: str = Field(default="batch", min_length=1, description="Channel whose version batch scoring uses.")
    fallback_channel: str = Field(
        default="online/champion", min_length=1, description="Channel used when `channel` points nowhere."
    )
    batch_rows: int = Field(
        default=65_536, ge=1, le=4_000_000, description="Rows per record batch: bounds memory per partition."
    )
    threads: int = Field(
        default=1, ge=1, le=64, description="onnxruntime threads per scoring process (raise only on idle cores)."
    )
    prefetch: bool = Field(
        default=True,
        description="Read and validate the next record batch in a second thread while onnxruntime scores this one.",
    )
    progress_s: float = Field(
        default=10.0, gt=0, le=3600, description="Seconds between progress lines in the flow's logs."
    )
    drift: bool = Field(default=True, description="Check input drift against the version's reference (Evidently).")
    drift_sample_rows: int = Field(
        default=2_000, ge=100, le=1_000_000, description="Rows sampled at random from each partition for drift."
    )
    drift_max_rows: int = Field(
        default=20_000, ge=100, le=5_000_000, description="At most this many sampled rows go into one drift check."
    )
    drift_share: float = Field(
        default=0.25, gt=0.0, le=1.0, description="The input has drifted when at least this share of features has."
    )
    drift_timeout_s: float = Field(default=300.0, gt=0, le=3600, description="Time limit of the drift check.")
    drift_process_mb: float = Field(
        default=16.0,
        ge=0,
        le=1_000_000,
        description=(
            "Sample the input and check drift in a second process started with the run, while the partitions "
            "score, when at least this many MB of input are pending and Evidently is not yet imported here; else in "
            "this process after scoring. 0: always in a second process."
        ),
    )
