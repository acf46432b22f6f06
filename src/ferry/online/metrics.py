"""Prometheus text for what BentoML does not count: requests per version and the prediction distribution."""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["BUCKETS", "OnlineMetrics"]

BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class OnlineMetrics:
    """Counters kept by the service process, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()  # (version, outcome)
        self.buckets: Counter[tuple[str, float]] = Counter()  # (version, le)
        self.count: Counter[str] = Counter()
        self.total: dict[str, float] = {}
        self.shadow_rows = 0
        self.shadow_agree = 0
        self.feedback_refused: Counter[str] = Counter()  # rule -> labels refused

    def request(self, version: str, outcome: str) -> None:
        with self._lock:
            self.requests[(version, outcome)] += 1

    def scores(self, version: str, p_positive: list[float]) -> None:
        with self._lock:
            for p in p_positive:
                for le in BUCKETS:
                    if p <= le:
                        self.buckets[(version, le)] += 1
                self.count[version] += 1
                self.total[version] = self.total.get(version, 0.0) + p

    def shadow(self, agree: int, rows: int) -> None:
        """The challenger predicted the same class as the champion on ``agree`` of ``rows`` shadowed rows."""
        with self._lock:
            self.shadow_agree += agree
            self.shadow_rows += rows

    def refused_feedback(self, rule: str) -> None:
        """A /feedback request was refused for ``rule`` (``prediction_id``: an id the service never issued)."""
        with self._lock:
            self.feedback_refused[rule] += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP ferry_online_requests_total Predict requests by answering version and outcome.",
                "# TYPE ferry_online_requests_total counter",
            ]
            for (version, outcome), n in sorted(self.requests.items()):
                lines.append(f'ferry_online_requests_total{{version="{version}",outcome="{outcome}"}} {n}')
            lines += [
                "# HELP ferry_online_score Probability of the positive class, by version.",
                "# TYPE ferry_online_score histogram",
            ]
            for version in sorted(self.count):
                for le in BUCKETS:
                    n = self.buckets[(version, le)]
                    lines.append(f'ferry_online_score_bucket{{version="{version}",le="{le}"}} {n}')
                lines.append(f'ferry_online_score_bucket{{version="{version}",le="+Inf"}} {self.count[version]}')
                lines.append(f'ferry_online_score_sum{{version="{version}"}} {self.total[version]!r}')
                lines.append(f'ferry_online_score_count{{version="{version}"}} {self.count[version]}')
            if self.shadow_rows:
                lines += [
                    "# HELP ferry_online_shadow_agreement Share of shadowed rows where the challenger agreed.",
                    "# TYPE ferry_online_shadow_agreement gauge",
                    f"ferry_online_shadow_agreement {self.shadow_agree / self.shadow_rows!r}",
                    "# TYPE ferry_online_shadow_rows_total counter",
                    f"ferry_online_shadow_rows_total {self.shadow_rows}",
                ]
            lines += [
                "# HELP ferry_online_feedback_refused_total Feedback requests refused, by rule (prediction_id: an id "
                "this service never issued).",
                "# TYPE ferry_online_feedback_refused_total counter",
            ]
            for rule, n in sorted(self.feedback_refused.items()):
                lines.append(f'ferry_online_feedback_refused_total{{rule="{rule}"}} {n}')
        return "\n".join(lines) + "\n"
