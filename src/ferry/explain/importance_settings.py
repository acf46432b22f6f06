"""``ImportanceSettings``: how much of the holdout the global importance table of each new version measures (the
rows explained, the shuffles of each feature). Read by the retrain's explain step (:mod:`ferry.train.explaining`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["REPEATS", "SAMPLE_ROWS", "ImportanceSettings"]

SAMPLE_ROWS = 200
"""Default of ``FERRY_IMPORTANCE_ROWS``: at most this many holdout rows are explained."""
REPEATS = 3
"""Default of ``FERRY_IMPORTANCE_REPEATS``: shuffles of each feature's holdout column."""


class ImportanceSettings(BaseSettings):
    """The measuring of each new version's ``importance.json``."""

    model_config = SettingsConfigDict(env_prefix="FERRY_IMPORTANCE_", extra="ignore")

    rows: int = Field(
        default=SAMPLE_ROWS,
        ge=1,
        le=100_000,
        description="Holdout rows (a seeded sample) explained for the mean |attribution| of each feature; each costs "
        "the version's plan (2,140 model evaluations for the 15-feature churn demo at the defaults).",
    )
    repeats: int = Field(
        default=REPEATS,
        ge=1,
        le=100,
        description="Shuffles of each feature's holdout column for its permutation importance (mean and spread).",
    )
