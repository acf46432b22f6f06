"""Which version answers a request: the champion alone, or the champion and a challenger in one of three modes.

- ``champion``: the champion answers every request.
- ``shadow``: the champion answers; the challenger scores the same records and its answer is only counted and
  logged, never returned.
- ``canary``: ``percent`` % of requests, drawn at random, are answered by the challenger.
- ``ab``: sticky assignment: a request's ``route_key`` (e.g. a customer id) always lands on the same side;
  ``percent`` % of keys go to the challenger. Requests without a key go to the champion.

Until the challenger is loaded, the champion answers everything. Every response names the version that answered.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass
from typing import Literal

from ferry.online.holder import LoadedModel

__all__ = ["MODES", "Mode", "Route", "Router", "ab_bucket"]

Mode = Literal["champion", "shadow", "canary", "ab"]
MODES: tuple[Mode, ...] = ("champion", "shadow", "canary", "ab")


@dataclass(frozen=True)
class Route:
    answer: LoadedModel
    role: Literal["champion", "challenger"]
    shadow: LoadedModel | None = None


def ab_bucket(key: str) -> float:
    """A key's stable place in [0, 100): the same key always gives the same number, on every process."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 1_000_000 / 10_000


class Router:
    """Chooses the answering version per request. ``percent`` is the challenger's share in canary and ab."""

    def __init__(self, mode: Mode, percent: float = 0.0, *, seed: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"routing mode {mode!r} is unknown; use one of {', '.join(MODES)}")
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be between 0 and 100, got {percent}")
        self.mode = mode
        self.percent = percent
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def route(self, champion: LoadedModel, challenger: LoadedModel | None, key: str | None = None) -> Route:
        if challenger is None or self.mode == "champion" or challenger.id == champion.id:
            return Route(champion, "champion")
        if self.mode == "shadow":
            return Route(champion, "champion", shadow=challenger)
        if self.mode == "canary":
            with self._lock:
                draw = self._random.random() * 100
            return Route(challenger, "challenger") if draw < self.percent else Route(champion, "champion")
        if key is not None and ab_bucket(key) < self.percent:
            return Route(challenger, "challenger")
        return Route(champion, "champion")
