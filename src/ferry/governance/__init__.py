"""Data governance: how long kept data may stay (retention), erasing one data subject, model cards.

| module | what |
|---|---|
| :mod:`~ferry.governance.cards` | a version's model card, built from its evidence (``build``, ``render``, ``write``) |
| :mod:`~ferry.governance.erasure` | :func:`forget` one data subject's rows everywhere; :class:`Erasure` |
| :mod:`~ferry.governance.retention` | :class:`RetentionSettings`, :func:`sweep`, :func:`sweep_runs`, :class:`Swept` |

The ``housekeeping`` flow (``flows/housekeeping.py``, scheduled daily in ``prefect.yaml``) runs both sweeps.
"""

from __future__ import annotations

from ferry.governance.erasure import Erasure, forget, subject_hash
from ferry.governance.retention import KINDS, RetentionSettings, Swept, sweep, sweep_runs

__all__ = ["KINDS", "Erasure", "RetentionSettings", "Swept", "forget", "subject_hash", "sweep", "sweep_runs"]
