"""The target column, per task: inferring the task from the data, and checking and encoding the labels or values.

:func:`ferry.data.validate` parses the column with its shared rules (text labels as codes into a label table,
numbers as float64) and hands it here; a :class:`Problem` comes back when rows break a rule, and ``validate`` turns
it into a :class:`~ferry.errors.DataValidationError` that names the column, the rule and example rows.

Encoded targets:

| task | encoded as |
|---|---|
| binary | int64 0/1, 1 = the positive class (the second of ``target_classes``) |
| multiclass | int64 index into ``target_classes`` |
| regression | float64 value |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ferry.schema import Schema, Task

__all__ = ["MAX_INFERRED_CLASSES", "Problem", "encode_classes", "encode_values", "infer"]

MAX_INFERRED_CLASSES = 20
"""Whole numbers with at most this many distinct values are read as classes when the task is inferred; more, or any
fraction, make a regression target."""

BoolArray = npt.NDArray[np.bool_]
Count = Callable[[BoolArray], str]


@dataclass(frozen=True)
class Problem:
    """Rows of the target break ``rule``; ``rows`` marks them (None when the problem is the column as a whole)."""

    rule: str
    detail: str
    rows: BoolArray | None = None


def _shown(labels: Sequence[object], limit: int = 5) -> str:
    return ", ".join(repr(v) for v in labels[:limit]) + (", ..." if len(labels) > limit else "")


def infer(labels: Sequence[str], numbers: npt.NDArray[np.float64]) -> tuple[Task, tuple[int | str, ...], str]:
    """The task, its classes and a one-line note saying what was inferred, from a target's distinct labels.

    ``labels`` are the distinct non-missing values as text and ``numbers`` the same values parsed (NaN where one is
    not a number). Numbers that are all 0/1 are binary (0, 1); whole numbers with at most
    :data:`MAX_INFERRED_CLASSES` levels are classes; other numbers are a regression target. Text with two levels
    is binary (sorted, the second positive); with more, multiclass.
    """
    numeric = len(labels) > 0 and not np.isnan(numbers).any()
    classes: tuple[int | str, ...]
    if numeric:
        whole = bool(np.all(np.mod(numbers, 1) == 0))
        distinct = sorted(set(numbers.tolist()))
        if whole and set(distinct) <= {0.0, 1.0}:
            task: Task = "binary"
            classes = (0, 1)
        elif whole and len(distinct) <= MAX_INFERRED_CLASSES:
            task = "binary" if len(distinct) == 2 else "multiclass"
            classes = tuple(int(v) for v in distinct)
        else:
            return "regression", (), f"regression (numbers with {len(distinct)} distinct values)"
    else:
        classes = tuple(sorted(labels))
        task = "binary" if len(classes) <= 2 else "multiclass"
    if task == "binary":
        how = f"binary, classes {list(classes)} (the second is positive)"
    else:
        how = f"multiclass with {len(classes)} classes {_shown(list(classes), 10)}"
    return task, classes, how


def encode_classes(
    codes: npt.NDArray[np.intp], labels: npt.NDArray[np.object_], schema: Schema, count: Count, n: int
) -> tuple[npt.NDArray[np.int64], Problem | None]:
    """Class labels (as codes into ``labels``, whose None entry means missing) -> int64 per the table above."""
    empty = np.zeros(0, dtype=np.int64)
    declared = [str(c) for c in schema.target_classes]
    missing = np.array([label is None for label in labels], dtype=bool)[codes]
    if missing.any():
        return empty, Problem(
            "target_not_null", f"{count(missing)} have no target; label them, or drop them before training", missing
        )
    index = {c: i for i, c in enumerate(declared)}
    other_labels = np.array([label not in index for label in labels], dtype=bool)
    other = other_labels[codes]
    if other.any():
        seen = sorted(str(label) for label in labels[other_labels & (labels != None)])  # noqa: E711
        if schema.kind == "binary":
            listed = f"[{schema.target_classes[0]!r}, {schema.target_classes[1]!r}]"
        else:
            listed = f"[{_shown(list(schema.target_classes), 10)}]"
        detail = (
            f"{count(other)} hold labels other than the declared target_classes {listed} (found "
            f"{', '.join(map(repr, seen[:5]))}); map them to the declared labels, or declare the right target_classes"
        )
        return empty, Problem("target_classes", detail, other)
    per_label = np.array([index.get(label, -1) if label is not None else -1 for label in labels], dtype=np.int64)
    encoded: npt.NDArray[np.int64] = per_label[codes]
    if len(np.unique(encoded)) < 2:
        only = schema.target_classes[int(encoded[0])] if len(encoded) else None
        detail = (
            f"all {n:,} rows have the class {only!r}; a classifier needs examples of at least two classes, so "
            "use a wider time range or a larger sample"
        )
        if schema.kind == "binary":
            detail = detail.replace("at least two classes", "both classes")
        return empty, Problem("target_two_classes", detail)
    return encoded, None


def encode_values(
    values: npt.NDArray[np.float64],
    bad_type: BoolArray,
    nonfinite: BoolArray,
    schema: Schema,
    count: Count,
    n: int,
) -> tuple[npt.NDArray[np.float64], Problem | None]:
    """A regression target: numbers only, finite, present, within target_min/target_max and not constant."""
    if bad_type.any():
        detail = (
            f"{count(bad_type)} hold values that are not numbers, but a regression target must be numeric; fix "
            "them, or declare task: multiclass if the values are classes"
        )
        return values, Problem("target_numeric", detail, bad_type)
    if nonfinite.any():
        detail = f"{count(nonfinite)} hold infinite or NaN targets; replace them with real values or drop the rows"
        return values, Problem("target_finite", detail, nonfinite)
    missing = np.isnan(values)
    if missing.any():
        return values, Problem(
            "target_not_null", f"{count(missing)} have no target; label them, or drop them before training", missing
        )
    low = -math.inf if schema.target_min is None else schema.target_min
    high = math.inf if schema.target_max is None else schema.target_max
    outside = (values < low) | (values > high)
    if outside.any():
        detail = (
            f"{count(outside)} are outside the declared range [{low:g}, {high:g}]; fix the data, or change "
            "target_min/target_max in the schema"
        )
        return values, Problem("target_range", detail, outside)
    if n and float(np.ptp(values)) == 0.0:
        detail = (
            f"all {n:,} rows have the value {float(values[0])!r}; a regressor needs a target that varies, so use "
            "a wider time range or a larger sample"
        )
        return values, Problem("target_constant", detail)
    return values, None
