"""The announcement policy: which judged drift is news, and which news may ask for a retrain.

- a source is judged only with at least ``min_rows`` new rows;
- drift is news when a feature drifts that was not already announced for the source within ``renotify_hours``
  (the same drift, or part of it, is not announced again; a drift that went away is news when it comes back);
- after an announcement that asks for a retrain, no other one does for ``cooldown_hours`` (no retrain storm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ferry.monitor.settings import MonitorSettings
from ferry.monitor.state import MonitorState

__all__ = ["Announcement", "Policy", "Seen", "Verdict"]


@dataclass(frozen=True)
class Announcement:
    """What the monitor says about one drifted source: announce it (an event), and whether to ask for a retrain."""

    source: str
    announce: bool
    retrain: bool
    why: str


class Verdict(Protocol):
    """What the policy needs of a judgement (a :class:`Judgement`, or a :class:`Seen` rebuilt from one's dict)."""

    @property
    def source(self) -> str: ...
    @property
    def drifted(self) -> bool: ...
    @property
    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class Seen:
    source: str
    drifted: bool
    fingerprint: str


@dataclass(frozen=True)
class Policy:
    """Alert fatigue, on purpose: dedupe the same drift and cool down between retrain requests."""

    settings: MonitorSettings

    def decide(self, state: MonitorState, judgements: Sequence[Verdict], now: datetime) -> list[Announcement]:
        out: list[Announcement] = []
        retrain_asked = False
        last = _parse(state.last_retrain_request)
        cooling = last is not None and now - last < timedelta(hours=self.settings.cooldown_hours)
        for j in judgements:
            if not j.drifted:
                state.announced.pop(j.source, None)  # drift gone: the next drift is news again
                continue
            seen = state.announced.get(j.source)
            when = _parse(seen.get("at")) if seen else None
            fresh = when is not None and now - when < timedelta(hours=self.settings.renotify_hours)
            drifted = set(filter(None, j.fingerprint.split(",")))
            known = set(filter(None, str(seen.get("fingerprint", "")).split(","))) if seen and fresh else set()
            if seen and fresh and drifted <= known:
                out.append(Announcement(j.source, False, False, f"same drift announced at {seen['at']}"))
                continue
            if cooling or retrain_asked:
                why = (
                    f"retrain requested at {state.last_retrain_request}; cooldown {self.settings.cooldown_hours:g} h"
                    if cooling
                    else "a retrain is already requested by this run"
                )
                out.append(Announcement(j.source, True, False, why))
            else:
                retrain_asked = True
                news = sorted(drifted - known)
                out.append(Announcement(j.source, True, True, "new drift" + (f": {', '.join(news)}" if known else "")))
            state.announced[j.source] = {
                "fingerprint": ",".join(sorted(drifted | known)),
                "at": now.isoformat(timespec="seconds"),
            }
        if retrain_asked:
            state.last_retrain_request = now.isoformat(timespec="seconds")
        return out


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    parsed = datetime.fromisoformat(ts)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
