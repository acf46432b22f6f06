"""The promotion gate: every check a candidate must pass, and the verdict.

| module | what lives there |
|---|---|
| :mod:`~ferry.gate.verdict` | our own frozen result types (checks, the verdict, drift results) and the decision |
| :mod:`~ferry.gate.evidently_adapter` | the Evidently adapter: the only module of ferry that imports Evidently |
| :mod:`~ferry.gate.behaviour` | behavioural tests of the exported model: direction and invariance |
"""

from __future__ import annotations

from ferry.gate.behaviour import BehaviourResult, direction_tests, invariance_test, positive_scores
from ferry.gate.evidently_adapter import data_drift, data_quality, import_evidently, input_drift, model_quality
from ferry.gate.verdict import Check, ColumnDrift, DriftResult, GateResult, decide, fail_closed

__all__ = [
    "BehaviourResult",
    "Check",
    "ColumnDrift",
    "DriftResult",
    "GateResult",
    "data_drift",
    "data_quality",
    "decide",
    "direction_tests",
    "fail_closed",
    "import_evidently",
    "input_drift",
    "invariance_test",
    "model_quality",
    "positive_scores",
]
