"""Data governance: how long kept data may stay (retention) and the sweep that enforces it; model cards.

| module | what |
|---|---|
| :mod:`~ferry.governance.cards` | a version's model card, built from its evidence (``build``, ``render``, ``write``) |
| :mod:`~ferry.governance.retention` | :class:`RetentionSettings`, :func:`sweep`, :func:`sweep_runs`, :class:`Swept` |

The ``housekeeping`` flow (``flows/housekeeping.py``, scheduled daily in ``prefect.yaml``) runs both sweeps.
"""

from __future__ import annotations

from ferry.governance.retention import KINDS, RetentionSettings, Swept, sweep, sweep_runs

__all__ = ["KINDS", "RetentionSettings", "Swept", "sweep", "sweep_runs"]
