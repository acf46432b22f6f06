"""Settings of the monitor flow (``FERRY_MONITOR_*``): how drift is judged and how often it may be announced."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MonitorSettings"]


class MonitorSettings(BaseSettings):
    """How the monitor flow judges drift and how often it may speak up."""

    model_config = SettingsConfigDict(env_prefix="FERRY_MONITOR_", extra="ignore")

    drift_share: float = Field(
        default=0.3, gt=0, le=1, description="Share of features that must drift for a source to count as drifted."
    )
    min_rows: int = Field(default=200, ge=1, description="Fewest new rows a source needs to be judged at all.")
    max_rows: int = Field(default=20_000, ge=100, description="Newest rows read per source and run (a sample cap).")
    cooldown_hours: float = Field(
        default=24.0, ge=0, description="After a retrain request, how long no other drift may ask for one."
    )
    renotify_hours: float = Field(
        default=72.0, ge=0, description="How long the same drift (source and drifted features) stays announced."
    )
    timeout_s: float = Field(default=300.0, gt=0, description="Evidently reports that take longer fail the run.")
    coverage_tolerance: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description="Regression: how far the interval's coverage on late labels may fall below the declared coverage "
        "before it is a finding (two binomial standard errors when the labels are few and that is more).",
    )
    label_lookback_days: float = Field(
        default=30.0, gt=0, description="How far back logged predictions are joined with labels that arrive late."
    )
