"""``ExplainSettings``: how each version's explanations are planned (background rows, evaluation budget) and how
many rows one online call may explain. Read at registration for the plan, by the online service for the limits."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ExplainSettings"]


class ExplainSettings(BaseSettings):
    """The explanation plan stored with each new version, and the online limits on ``/explain``."""

    model_config = SettingsConfigDict(env_prefix="FERRY_EXPLAIN_", extra="ignore")

    background_rows: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Rows of the reference sample (features only) stored with each new version as the background "
        "every explanation is measured against. More rows: a steadier base value, and a slower explanation.",
    )
    budget: int = Field(
        default=4096,
        ge=256,
        le=10_000_000,
        description="Model evaluations per explained row (coalitions x background rows) that a new version's plan "
        "may use: exact Shapley values when every coalition fits (8 features at the defaults), else as many "
        "seeded permutations as fit (at least 16). Every surface runs the same plan.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the background draw and of the sampled permutations.")
    max_rows: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Most records one online /explain call may hold; more is refused with 413.",
    )
    top_k: int = Field(
        default=5, ge=1, le=1000, description="Features named in an explanation's top list when the caller asks none."
    )
