"""Prometheus text for the service: HTTP requests by endpoint and status, requests per version, the prediction
distribution, shadow agreement and refused feedback.

The prediction distribution follows the task: ``ferry_online_score``, a histogram of P(positive class), for a
binary model; ``ferry_online_predicted_class_total``, a count per predicted class, for a multiclass one;
``ferry_online_value``, a histogram of the values, for a regressor (its buckets are the deciles of the version's own
answers on its reference sample, so they fit any scale). Shadow agreement is the share of shadowed rows where the
challenger agreed with the answer: the same class for a classifier; for a regressor, the challenger's value inside
the champion's prediction interval.

Every label comes from a bounded set. The HTTP endpoint label is one of the service's own paths or ``other``
(:data:`KNOWN_PATHS`), so requests to any number of unknown paths (a scanner, an attacker) leave ``/metrics`` the
same size. BentoML's own request metrics label the raw path; the service turns them off (``metrics.enabled:
false``) and the front door (:mod:`ferry.online.front`) counts instead.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter, OrderedDict

from ferry.online.auth import OPEN_PATHS, SCOPE_BY_PATH

__all__ = ["BUCKETS", "KNOWN_PATHS", "OnlineMetrics"]

log = logging.getLogger("ferry.online.security")

MAX_CLIENTS = 10_000
"""Clients whose refusals are counted at once (the least recently refused are forgotten first)."""

BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KNOWN_PATHS = frozenset({*SCOPE_BY_PATH, *OPEN_PATHS, "/", "/docs.json"})
"""The endpoint label's values besides ``other``."""


class OnlineMetrics:
    """Counters kept by the service process, rendered in the Prometheus text format."""

    def __init__(self, *, suspect_refusals: int = 20, suspect_window_s: float = 60.0) -> None:
        self.suspect_refusals = suspect_refusals
        self.suspect_window_s = suspect_window_s
        self._clients: OrderedDict[str, tuple[float, int]] = OrderedDict()  # host -> (window start, refusals)
        self.refusals: Counter[tuple[int, str, str]] = Counter()  # (status, reason, key)
        self.suspects_total = 0
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()  # (version, outcome)
        self.buckets: Counter[tuple[str, int]] = Counter()  # (version, index of the first bucket it fits)
        self.count: Counter[str] = Counter()
        self.total: dict[str, float] = {}
        self.classes: Counter[tuple[str, str]] = Counter()  # (version, predicted class)
        self.value_buckets: dict[str, tuple[float, ...]] = {}  # version -> its histogram's upper bounds
        self.value_counts: Counter[tuple[str, int]] = Counter()  # (version, index of the first bucket it fits)
        self.value_count: Counter[str] = Counter()
        self.value_total: dict[str, float] = {}
        self.shadow_rows = 0
        self.shadow_agree = 0
        self.feedback_refused: Counter[str] = Counter()  # rule -> labels refused
        self.http: Counter[tuple[str, int]] = Counter()  # (endpoint, status)
        self.http_buckets: Counter[tuple[str, int]] = Counter()  # (endpoint, index of the first bucket it fits)
        self.http_count: Counter[str] = Counter()
        self.http_seconds: dict[str, float] = {}
        self.http_in_progress: Counter[str] = Counter()

    def request(self, version: str, outcome: str) -> None:
        with self._lock:
            self.requests[(version, outcome)] += 1

    def scores(self, version: str, p_positive: list[float]) -> None:
        with self._lock:
            for p in p_positive:  # one count per value; the cumulative buckets are summed when rendered
                self.buckets[(version, bisect.bisect_left(BUCKETS, p))] += 1
                self.count[version] += 1
                self.total[version] = self.total.get(version, 0.0) + p

    def predicted(self, version: str, classes: list[str]) -> None:
        """A multiclass model predicted these classes (one per row)."""
        with self._lock:
            for c in classes:
                self.classes[(version, c)] += 1

    def values(self, version: str, values: list[float], buckets: tuple[float, ...]) -> None:
        """A regressor answered these values; ``buckets`` are the version's histogram bounds (kept from its first
        call)."""
        with self._lock:
            bounds = self.value_buckets.setdefault(version, buckets)
            for v in values:  # one count per value; the cumulative buckets are summed when rendered
                self.value_counts[(version, bisect.bisect_left(bounds, v))] += 1
                self.value_count[version] += 1
                self.value_total[version] = self.value_total.get(version, 0.0) + v

    def shadow(self, agree: int, rows: int) -> None:
        """The challenger agreed with the answer on ``agree`` of ``rows`` shadowed rows (see the module docstring
        for what agreeing means per task)."""
        with self._lock:
            self.shadow_agree += agree
            self.shadow_rows += rows

    def http_started(self, path: str) -> None:
        with self._lock:
            self.http_in_progress[_endpoint(path)] += 1

    def http_request(self, path: str, status: int, seconds: float) -> None:
        """One HTTP request answered: ``path`` is labelled as itself when it is the service's own, else ``other``."""
        endpoint = _endpoint(path)
        with self._lock:
            self.http_in_progress[endpoint] -= 1
            self.http[(endpoint, status)] += 1
            self.http_buckets[(endpoint, bisect.bisect_left(LATENCY_BUCKETS, seconds))] += 1
            self.http_count[endpoint] += 1
            self.http_seconds[endpoint] = self.http_seconds.get(endpoint, 0.0) + seconds

    def refused(self, status: int, reason: str, key: str, client: str) -> None:
        """A request was refused: counted by status, reason and key, and against its client. A client refused
        ``suspect_refusals`` times within ``suspect_window_s`` becomes a suspect: counted, and logged once."""
        now = time.monotonic()
        with self._lock:
            self.refusals[(status, reason, key)] += 1
            start, n = self._clients.pop(client, (now, 0))
            if now - start > self.suspect_window_s:
                start, n = now, 0
            n += 1
            self._clients[client] = (start, n)
            if len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
            crossed = n == self.suspect_refusals
            if crossed:
                self.suspects_total += 1
        if crossed:
            log.warning(
                "client %s was refused %d times within %g s (last: %d %s, key %s)",
                client, n, self.suspect_window_s, status, reason, key,
            )  # fmt: skip

    def is_suspect(self, client: str) -> bool:
        """Whether ``client`` was refused ``suspect_refusals`` times within the current window."""
        with self._lock:
            seen = self._clients.get(client)
        return (
            seen is not None
            and seen[1] >= self.suspect_refusals
            and time.monotonic() - seen[0] <= self.suspect_window_s
        )

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
            lines += _histogram("ferry_online_score", "version", BUCKETS, self.buckets, self.count, self.total)
            if self.classes:
                lines += [
                    "# HELP ferry_online_predicted_class_total Rows answered, by version and predicted class "
                    "(multiclass models).",
                    "# TYPE ferry_online_predicted_class_total counter",
                ]
                lines += [
                    f'ferry_online_predicted_class_total{{version="{version}",class="{_escape(c)}"}} {n}'
                    for (version, c), n in sorted(self.classes.items())
                ]
            if self.value_count:
                lines += [
                    "# HELP ferry_online_value Values answered by regression models, by version (buckets: the deciles "
                    "of the version's answers on its reference sample).",
                    "# TYPE ferry_online_value histogram",
                ]
                for version in sorted(self.value_count):
                    lines += _histogram(
                        "ferry_online_value",
                        "version",
                        self.value_buckets[version],
                        self.value_counts,
                        Counter({version: self.value_count[version]}),
                        self.value_total,
                    )
            if self.shadow_rows:
                lines += [
                    "# HELP ferry_online_shadow_agreement Share of shadowed rows where the challenger agreed (the same "
                    "class; for a regressor, its value inside the answer's prediction interval).",
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
            lines += [
                "# HELP ferry_online_refused_total Requests refused, by status, reason and key (- when none was "
                "known).",
                "# TYPE ferry_online_refused_total counter",
            ]
            for (status, reason, key), n in sorted(self.refusals.items()):
                lines.append(f'ferry_online_refused_total{{status="{status}",reason="{reason}",key="{key}"}} {n}')
            lines += [
                "# HELP ferry_online_suspect_clients_total Clients that crossed the refusal threshold in a window.",
                "# TYPE ferry_online_suspect_clients_total counter",
                f"ferry_online_suspect_clients_total {self.suspects_total}",
            ]
            lines += [
                "# HELP ferry_online_http_requests_total HTTP requests by endpoint (the service's own paths, else "
                "other) and status.",
                "# TYPE ferry_online_http_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self.http.items()):
                lines.append(f'ferry_online_http_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines += [
                "# HELP ferry_online_http_requests_in_progress HTTP requests being handled, by endpoint.",
                "# TYPE ferry_online_http_requests_in_progress gauge",
            ]
            for endpoint, n in sorted(self.http_in_progress.items()):
                lines.append(f'ferry_online_http_requests_in_progress{{endpoint="{endpoint}"}} {n}')
            lines += [
                "# HELP ferry_online_http_request_duration_seconds Time to answer, by endpoint.",
                "# TYPE ferry_online_http_request_duration_seconds histogram",
            ]
            lines += _histogram(
                "ferry_online_http_request_duration_seconds",
                "endpoint",
                LATENCY_BUCKETS,
                self.http_buckets,
                self.http_count,
                self.http_seconds,
            )
        return "\n".join(lines) + "\n"


def _histogram(
    name: str,
    label: str,
    buckets: tuple[float, ...],
    counts: Counter[tuple[str, int]],
    totals: Counter[str],
    sums: dict[str, float],
) -> list[str]:
    """The sample lines of a Prometheus histogram with one label: cumulative buckets, +Inf, sum and count.
    ``counts`` holds per label value how many observations first fit each bucket (by index)."""
    lines = []
    for value in sorted(totals):
        below = 0
        for i, le in enumerate(buckets):
            below += counts[(value, i)]
            lines.append(f'{name}_bucket{{{label}="{value}",le="{le}"}} {below}')
        lines.append(f'{name}_bucket{{{label}="{value}",le="+Inf"}} {totals[value]}')
        lines.append(f'{name}_sum{{{label}="{value}"}} {sums[value]!r}')
        lines.append(f'{name}_count{{{label}="{value}"}} {totals[value]}')
    return lines


def _escape(value: str) -> str:
    """A label value in the Prometheus text format (backslash, double quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _endpoint(path: str) -> str:
    return path if path in KNOWN_PATHS else "other"
