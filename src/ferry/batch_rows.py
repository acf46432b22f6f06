"""Row-level validation for batch scoring: the rules of :func:`ferry.data.validate`, but per row.

:func:`ferry.data.validate` refuses a whole frame when any row breaks a rule, which is right for training data. A
batch run must instead score the good rows and send each bad one to the rejects file with its reason.
:func:`split_rows` first tries ``validate`` on the whole record batch (the fast path: clean data costs nothing
extra); only when that fails does it find the offending rows with :func:`row_problems`, which applies the same rules
column by column and returns a mask per (column, rule), and then validates the remaining rows with ``validate``
itself, so the rows that are scored are exactly the rows ``validate`` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ferry import data as fdata
from ferry.errors import DataValidationError
from ferry.schema import Feature, Schema

__all__ = ["Problem", "row_problems", "split_rows"]

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Problem:
    """Rows of one batch (``mask``) that break one rule of one column."""

    column: str
    rule: str
    mask: BoolArray
    reason: str


def _feature_problems(col: pd.Series[Any], f: Feature) -> list[Problem]:
    out: list[Problem] = []
    if f.type == "numeric":
        values, bad_type, nonfinite = fdata._numeric(col)
        out.append(Problem(f.name, "numeric_type", bad_type, "value is not a number"))
        out.append(Problem(f.name, "finite", nonfinite & ~bad_type, "value is infinite or NaN written as a number"))
        missing = np.isnan(values) & ~bad_type & ~nonfinite
        if not f.nullable:
            out.append(Problem(f.name, "not_null", missing, "value is missing and the schema says nullable: false"))
        low = f.min if f.min is not None else -np.inf
        high = f.max if f.max is not None else np.inf
        with np.errstate(invalid="ignore"):
            outside = ~np.isnan(values) & ~nonfinite & ((values < low) | (values > high))
        lo = "-inf" if f.min is None else f"{f.min:g}"
        hi = "inf" if f.max is None else f"{f.max:g}"
        out.append(Problem(f.name, "range", outside, f"value is outside the declared range [{lo}, {hi}]"))
        return out
    codes, labels = fdata._coded_text(col)
    missing = np.array([label is None for label in labels], dtype=bool)[codes]
    if not f.nullable:
        out.append(Problem(f.name, "not_null", missing, "value is missing and the schema says nullable: false"))
    if f.levels is not None and not f.allow_unknown:
        known = set(f.levels)
        unknown = np.array([label is not None and label not in known for label in labels], dtype=bool)[codes]
        levels = ", ".join(f.levels)
        out.append(Problem(f.name, "levels", unknown, f"category is not one of the declared levels ({levels})"))
    return out


def row_problems(df: pd.DataFrame, schema: Schema) -> list[Problem]:
    """Every (column, rule) that some rows of ``df`` break, with the rows, in the order validate() checks them.

    ``df`` is a frame as :func:`ferry.data.read_table` returns it. A missing column is a problem of every row.
    """
    n = len(df)
    problems: list[Problem] = []
    everyone = np.ones(n, dtype=bool)
    columns = [c for c in (schema.id, schema.timestamp) if c is not None] + list(schema.feature_names)
    for name in columns:
        if name not in df.columns:
            problems.append(Problem(name, "required", everyone, "required column is missing from the partition"))
    if schema.timestamp is not None and schema.timestamp in df.columns:
        stamps, missing, unparsed = fdata._parse_timestamps(df[schema.timestamp])
        within = ((stamps >= fdata._TS_MIN) & (stamps <= fdata._TS_MAX)).to_numpy(dtype=bool, na_value=False)
        bad = unparsed | (~missing & ~unparsed & ~within)
        problems.append(Problem(schema.timestamp, "timestamp_type", bad, "value is not a timestamp (ISO 8601)"))
        problems.append(Problem(schema.timestamp, "not_null", missing & ~bad, "timestamp is missing"))
    for f in schema.features:
        if f.name in df.columns:
            problems.extend(_feature_problems(df[f.name], f))
    return [p for p in problems if p.mask.any()]


def split_rows(df: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, BoolArray, list[tuple[int, str, str, str]]]:
    """(validated good rows, mask of good rows, rejects as (position, column, rule, reason))."""
    n = len(df)
    try:
        return fdata.validate(df, schema, require_target=False), np.ones(n, dtype=bool), []
    except DataValidationError:
        pass
    reasons: dict[int, tuple[str, str, list[str]]] = {}
    for p in row_problems(df, schema):
        for pos in np.flatnonzero(p.mask).tolist():
            if pos in reasons:
                reasons[pos][2].append(f"{p.column!r} ({p.rule}): {p.reason}")
            else:
                reasons[pos] = (p.column, p.rule, [f"{p.column!r} ({p.rule}): {p.reason}"])
    good = np.ones(n, dtype=bool)
    good[list(reasons)] = False
    if not good.any():
        rejects = [(pos, c, r, "; ".join(why)) for pos, (c, r, why) in sorted(reasons.items())]
        return df.iloc[:0], good, rejects
    try:
        valid = fdata.validate(df[good], schema, require_target=False)
    except DataValidationError:
        # A rule that row_problems does not mirror: validate the remaining rows one by one (slow, but exact).
        for pos in np.flatnonzero(good).tolist():
            try:
                fdata.validate(df.iloc[[pos]], schema, require_target=False)
            except DataValidationError as exc:
                reasons[pos] = (exc.column, exc.rule, [f"{exc.column!r} ({exc.rule}): {exc.detail}"])
                good[pos] = False
        valid = fdata.validate(df[good], schema, require_target=False)
    rejects = [(pos, c, r, "; ".join(why)) for pos, (c, r, why) in sorted(reasons.items())]
    return valid, good, rejects
