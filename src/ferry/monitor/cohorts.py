"""Edge cohorts: the drift sketches of a cohort's heartbeats merged into one sketch as they stream.

A fleet reports far more heartbeats than a monitor run can hold (10,000 devices at one an hour are 240,000 a day),
so heartbeats are never gathered into one frame. Each one is added to its cohort's :class:`CohortSketch` and
dropped; what is kept grows with the schema (features and declared levels), never with the heartbeats:

- numeric features: values and missing values are summed, and each quantile is the mean of the devices' quantiles
  weighted by the values each device saw (quantile averaging, which keeps the location and spread a cohort drifts
  in);
- categorical features: counts of the schema's declared levels, ``other`` and missing are summed; a level the schema
  does not declare is counted as ``other`` (as the device agent does), so no heartbeat can grow the state;
- a device that withheld a feature's distribution (fewer than its ``sketch_min_count`` values) is left out of that
  feature, as :func:`~ferry.monitor.sketches.sketch_frame` leaves it out; when every device withheld it, its counts
  remain and its distribution stays empty.

:meth:`CohortSketch.to_sketch` gives a sketch in the heartbeat's own form, which
:func:`~ferry.monitor.sketches.sketch_frame` turns into rows, exactly as it does the reference's sketch. Sketches
merge (:meth:`CohortSketch.merge`), so partial sums from several readers add up to the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ferry.monitor.sketches import QUANTILES
from ferry.schema import Schema

__all__ = ["CohortSketch"]

_NAMES = tuple(f"p{int(q * 100)}" for q in QUANTILES)


def _int(value: Any) -> int:
    if type(value) is int:  # what the service's checks let through; anything else is read with care
        return value if value > 0 else 0
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


@dataclass
class _Counts:
    """What every feature's merged sketch counts: the values and missing values of the devices that sent the
    feature's distribution, and apart from them of the devices that withheld it."""

    count: int = 0
    missing: int = 0
    known: bool = False
    withheld_count: int = 0
    withheld_missing: int = 0

    def _take(self, count: int, missing: int, *, withheld: bool) -> bool:
        """Count one device's values; False when it withheld its distribution (counted apart, nothing to add)."""
        if withheld:
            self.withheld_count += count
            self.withheld_missing += missing
            return False
        self.known = True
        self.count += count
        self.missing += missing
        return True

    def _merge_counts(self, other: _Counts) -> None:
        self.known |= other.known
        self.count += other.count
        self.missing += other.missing
        self.withheld_count += other.withheld_count
        self.withheld_missing += other.withheld_missing


@dataclass
class _Numeric(_Counts):
    weighted: list[float] = field(default_factory=lambda: [0.0] * len(_NAMES))

    def add(self, part: Mapping[str, Any]) -> None:
        count, missing = _int(part.get("count")), _int(part.get("missing"))
        quantiles = part.get("quantiles") or {}
        given = [float(v) for v in (quantiles.get(name) for name in _NAMES) if isinstance(v, (int, float))]
        # withheld (or unusable): fewer quantiles than a distribution has
        if self._take(count, missing, withheld=bool(count) and len(given) < len(_NAMES)) and count:
            self.weighted = [w + count * v for w, v in zip(self.weighted, given, strict=True)]

    def merge(self, other: _Numeric) -> None:
        self._merge_counts(other)
        self.weighted = [a + b for a, b in zip(self.weighted, other.weighted, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        if not self.known:
            return {"count": self.withheld_count, "missing": self.withheld_missing, "quantiles": {}}
        quantiles = {n: w / self.count for n, w in zip(_NAMES, self.weighted, strict=True)} if self.count else {}
        return {"count": self.count, "missing": self.missing, "quantiles": quantiles}


@dataclass
class _Categorical(_Counts):
    levels: frozenset[str] = frozenset()
    counts: dict[str, int] = field(default_factory=dict)
    other: int = 0

    def add(self, part: Mapping[str, Any]) -> None:
        counts = part.get("counts") or {}
        other, missing = _int(part.get("other")), _int(part.get("missing"))
        count = _int(part["count"]) if part.get("count") is not None else sum(map(_int, counts.values())) + other
        if not self._take(count, missing, withheld=bool(count) and not counts and not other):
            return
        self.other += other
        for level, n in counts.items():
            if str(level) in self.levels:
                self.counts[str(level)] = self.counts.get(str(level), 0) + _int(n)
            else:
                self.other += _int(n)

    def merge(self, other: _Categorical) -> None:
        self._merge_counts(other)
        self.other += other.other
        for level, n in other.counts.items():
            self.counts[level] = self.counts.get(level, 0) + n

    def to_dict(self) -> dict[str, Any]:
        if not self.known:
            return {"count": self.withheld_count, "missing": self.withheld_missing, "counts": {}, "other": 0}
        counts = dict(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return {"count": self.count, "missing": self.missing, "counts": counts, "other": self.other}


class CohortSketch:
    """The merged drift sketch of one cohort, with the rows each model version reported and the heartbeats added."""

    def __init__(self, schema: Schema) -> None:
        self.rows = 0
        self.heartbeats = 0
        self.versions: dict[str, int] = {}
        self._numeric = {f.name: _Numeric() for f in schema.features if f.type == "numeric"}
        self._categorical = {
            f.name: _Categorical(levels=frozenset(str(v) for v in f.levels or ()))
            for f in schema.features
            if f.type != "numeric"
        }

    def add(self, sketch: Mapping[str, Any], version: str | None) -> None:
        """Add one heartbeat's sketch (features the schema does not know are ignored)."""
        rows = _int(sketch.get("rows"))
        self.rows += rows
        self.heartbeats += 1
        self.versions[str(version)] = self.versions.get(str(version), 0) + rows
        numeric, categorical = sketch.get("numeric") or {}, sketch.get("categorical") or {}
        for name, tally in self._numeric.items():
            tally.add(numeric.get(name) or {})
        for name, counts in self._categorical.items():
            counts.add(categorical.get(name) or {})

    def merge(self, other: CohortSketch) -> CohortSketch:
        """Add another reader's partial sums of the same cohort (and schema) to this one."""
        self.rows += other.rows
        self.heartbeats += other.heartbeats
        for version, rows in other.versions.items():
            self.versions[version] = self.versions.get(version, 0) + rows
        for name, tally in self._numeric.items():
            tally.merge(other._numeric[name])
        for name, counts in self._categorical.items():
            counts.merge(other._categorical[name])
        return self

    def to_sketch(self) -> dict[str, Any]:
        """One sketch in the heartbeat's form, standing for every sketch added."""
        return {
            "rows": self.rows,
            "numeric": {name: tally.to_dict() for name, tally in self._numeric.items()},
            "categorical": {name: counts.to_dict() for name, counts in self._categorical.items()},
        }
