"""The gate's own result types and its decision: frozen, JSON-ready, free of Evidently.

Each :class:`Check` records its name, the value observed, its threshold and whether it passed. :func:`decide` turns
the checks into one :class:`GateResult`; :func:`fail_closed` turns any error of a check into a failed gate with the
reason recorded. :class:`DriftResult` (per column: :class:`ColumnDrift`) is what every drift check returns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Check", "ColumnDrift", "DriftResult", "GateResult", "decide", "fail_closed"]


@dataclass(frozen=True)
class Check:
    """One gate check: what was measured, against which threshold, and whether it passed."""

    name: str
    observed: float | str | None
    threshold: str
    passed: bool
    source: str = "ferry"  # "evidently" when Evidently computed and tested the value
    detail: str = ""


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    champion: str | None = None
    error: str | None = None
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "rejected"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = [asdict(c) for c in self.checks]
        d["reasons"] = list(self.reasons)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        return cls(
            passed=bool(d["passed"]),
            checks=tuple(Check(**c) for c in d["checks"]),
            reasons=tuple(d["reasons"]),
            champion=d.get("champion"),
            error=d.get("error"),
            decided_at=d.get("decided_at", ""),
        )


def _json_default(o: object) -> object:
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def decide(checks: Sequence[Check], *, champion: str | None, error: str | None = None) -> GateResult:
    """Passed only when there is no error, at least one check, and every check passed."""
    reasons = [f"{c.name}: observed {c.observed} not {c.threshold}" for c in checks if not c.passed]
    if error is not None:
        reasons.insert(0, f"gate error (fails closed): {error}")
    if not checks and error is None:
        reasons.append("no checks ran (fails closed)")
    return GateResult(
        passed=not reasons,
        checks=tuple(checks),
        reasons=tuple(reasons),
        champion=champion,
        error=error,
    )


def fail_closed(fn: Callable[[], list[Check]], checks: list[Check]) -> str | None:
    """Run one gate stage, adding its checks; return the error text instead of raising (the gate then fails)."""
    try:
        checks.extend(fn())
    except Exception as exc:  # any failure of a stage means no promotion; the reason is recorded
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's drift test of one feature: the method, its score, the threshold and the verdict.

    For p-value methods (K-S, chi-square) a score *below* the threshold means drift; for distances (Wasserstein,
    Jensen-Shannon) a score *at or above* it does. ``drifted`` is Evidently's own verdict.
    """

    feature: str
    method: str
    score: float | str | None
    threshold: float | None
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Input drift of a sample against a reference: per feature, and for the data set (drifted share >= bound)."""

    drifted: bool
    drifted_share: float
    drift_share: float
    columns: tuple[ColumnDrift, ...]
    reference_rows: int
    current_rows: int

    @property
    def drifted_features(self) -> list[str]:
        return [c.feature for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["columns"] = [asdict(c) for c in self.columns]
        return d
