"""Row-level validation and ONNX encoding for batch scoring: the rules of :func:`ferry.data.validate`, but per row.

:func:`ferry.data.validate` refuses a whole frame when any row breaks a rule, which is right for training data. A
batch run must instead score the good rows and send each bad one to the rejects file with its reason.

:func:`check_batch` does this on a pyarrow record batch directly, without building a pandas frame: numbers are
taken from Arrow buffers with numpy, text columns are dictionary-encoded by pyarrow so every rule runs once per
distinct value (with the same per-value helpers :func:`ferry.data.validate` uses) and is spread back to rows by the
codes. The ONNX inputs of the good rows are built from the same arrays, exactly as
:func:`ferry.data.to_onnx_inputs` builds them from a validated frame (the tests check both bit for bit). A column
type the fast path does not know (booleans, nested types, ...) is typed by the pandas route for that column alone,
and a batch with duplicated column names goes the whole pandas route (:func:`split_rows`).

:func:`row_problems` applies the same rules to a pandas frame; :func:`split_rows` is the pandas route.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ferry import data as fdata
from ferry.errors import DataValidationError
from ferry.schema import Feature, Schema

__all__ = ["Checked", "Problem", "check_batch", "row_problems", "split_rows"]


BoolArray = npt.NDArray[np.bool_]


FloatArray = npt.NDArray[np.float64]


ObjectArray = npt.NDArray[np.object_]


Codes = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Problem:
    """Rows of one batch (``mask``) that break one rule of one column."""

    column: str
    rule: str
    mask: BoolArray
    reason: str


class Typed:
    """The feature values of a checked batch as :func:`ferry.data.validate` types them, taken only on demand.

    Numeric features are float64 with NaN for missing; categorical ones are str with None for missing. Holds
    either per-feature arrays of the whole batch (the Arrow route) or the validated frame of its good rows.
    """

    def __init__(
        self,
        numeric: dict[str, FloatArray] | None = None,
        coded: dict[str, tuple[Codes, ObjectArray]] | None = None,
        *,
        order: list[str] | None = None,
        frame: pd.DataFrame | None = None,
    ) -> None:
        self._numeric = numeric or {}
        self._coded = coded or {}
        self._order = order or []
        self._frame = frame

    def take(self, positions: npt.NDArray[np.intp]) -> pd.DataFrame:
        """The features of the rows at ``positions`` (positions in the batch; good rows only)."""
        if self._frame is not None:
            return self._frame.loc[positions].reset_index(drop=True)
        columns: dict[str, Any] = {}
        for name in self._order:
            if name in self._numeric:
                columns[name] = self._numeric[name][positions]
            else:
                codes, labels = self._coded[name]
                columns[name] = pd.Series(labels[codes[positions]], dtype=object)
        return pd.DataFrame(columns)


@dataclass(frozen=True)
class Checked:
    """One record batch, checked: which rows are good, why the others are not, and the good rows' ONNX inputs."""

    rows: int
    good: BoolArray
    rejects: list[tuple[int, str, str, str]]  # (position in the batch, column, rule, every reason)
    inputs: dict[str, np.ndarray[Any, Any]] | None  # None when no row is good
    typed: Typed | None = None  # the features, for drift samples (None when a feature column is missing)


def _numeric_problems(f: Feature, values: FloatArray, bad_type: BoolArray, nonfinite: BoolArray) -> list[Problem]:
    out = [
        Problem(f.name, "numeric_type", bad_type, "value is not a number"),
        Problem(f.name, "finite", nonfinite & ~bad_type, "value is infinite or NaN written as a number"),
    ]
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


def _categorical_problems(f: Feature, codes: Codes, labels: ObjectArray, limit: int) -> list[Problem]:
    """``labels`` holds str or None (missing) per code; rules run once per label, then spread by ``codes``."""
    out: list[Problem] = []
    if not f.nullable:
        missing = np.array([label is None for label in labels], dtype=bool)[codes]
        out.append(Problem(f.name, "not_null", missing, "value is missing and the schema says nullable: false"))
    long = np.array([label is not None and len(label) > limit for label in labels], dtype=bool)[codes]
    out.append(Problem(f.name, "max_length", long, f"text is longer than {limit} characters (max_length)"))
    if f.levels is not None and not f.allow_unknown:
        known = set(f.levels)
        unknown = np.array([label is not None and label not in known for label in labels], dtype=bool)[codes]
        levels = ", ".join(f.levels)
        out.append(Problem(f.name, "levels", unknown, f"category is not one of the declared levels ({levels})"))
    return out


def _timestamp_problems(name: str, bad: BoolArray, missing: BoolArray) -> list[Problem]:
    return [
        Problem(name, "timestamp_type", bad, "value is not a timestamp (ISO 8601)"),
        Problem(name, "not_null", missing & ~bad, "timestamp is missing"),
    ]


def _required(name: str, n: int) -> Problem:
    return Problem(name, "required", np.ones(n, dtype=bool), "required column is missing from the partition")


def _feature_problems(col: pd.Series[Any], f: Feature, limit: int) -> list[Problem]:
    if f.type == "numeric":
        return _numeric_problems(f, *fdata.parse_numeric(col))
    return _categorical_problems(f, *fdata.coded_text(col), limit)


def _id_problem(name: str, lengths: npt.NDArray[np.int64], limit: int) -> Problem:
    """Ids longer than the schema's max_text_length (``lengths``: characters of each id as text, 0 when missing)."""
    return Problem(name, "max_length", lengths > limit, f"id is longer than {limit} characters (max_text_length)")


def _pandas_id_lengths(col: pd.Series[Any]) -> npt.NDArray[np.int64]:
    codes, labels = fdata.coded_text(col)
    return np.array([0 if label is None else len(label) for label in labels], dtype=np.int64)[codes]


def _arrow_id_lengths(arr: pa.Array) -> npt.NDArray[np.int64]:
    try:
        text = arr if _is_text(arr.type) else pc.cast(arr, pa.string())
        lengths = pc.fill_null(pc.utf8_length(text), 0)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):  # no text form in Arrow: as pandas does
        return _pandas_id_lengths(_as_series(arr, "id"))
    return np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)


def _pandas_timestamp(col: pd.Series[Any]) -> tuple[BoolArray, BoolArray]:
    _, bad, missing = fdata.timestamp_masks(col)
    return bad, missing


def row_problems(df: pd.DataFrame, schema: Schema) -> list[Problem]:
    """Every (column, rule) that some rows of ``df`` break, with the rows, in the order validate() checks them.

    ``df`` is a frame as :func:`ferry.data.read_table` returns it. A missing column is a problem of every row.
    """
    n = len(df)
    problems: list[Problem] = []
    columns = [c for c in (schema.id, schema.timestamp) if c is not None] + list(schema.feature_names)
    for name in columns:
        if name not in df.columns:
            problems.append(_required(name, n))
    if schema.id is not None and schema.id in df.columns:
        problems.append(_id_problem(schema.id, _pandas_id_lengths(df[schema.id]), schema.max_text_length))
    if schema.timestamp is not None and schema.timestamp in df.columns:
        problems.extend(_timestamp_problems(schema.timestamp, *_pandas_timestamp(df[schema.timestamp])))
    for f in schema.features:
        if f.name in df.columns:
            problems.extend(_feature_problems(df[f.name], f, schema.text_limit(f.name)))
    return [p for p in problems if p.mask.any()]


def _reasons(problems: list[Problem]) -> dict[int, tuple[str, str, list[str]]]:
    """Per offending row: the first (column, rule) it breaks and every reason, in the order of ``problems``."""
    reasons: dict[int, tuple[str, str, list[str]]] = {}
    for p in problems:
        for pos in np.flatnonzero(p.mask).tolist():
            why = f"{p.column!r} ({p.rule}): {p.reason}"
            if pos in reasons:
                reasons[pos][2].append(why)
            else:
                reasons[pos] = (p.column, p.rule, [why])
    return reasons


def _as_rejects(reasons: dict[int, tuple[str, str, list[str]]]) -> list[tuple[int, str, str, str]]:
    return [(pos, c, r, "; ".join(why)) for pos, (c, r, why) in sorted(reasons.items())]


def split_rows(df: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, BoolArray, list[tuple[int, str, str, str]]]:
    """(validated good rows, mask of good rows, rejects as (position, column, rule, reason)): the pandas route."""
    n = len(df)
    try:
        return fdata.validate(df, schema, require_target=False), np.ones(n, dtype=bool), []
    except DataValidationError:
        pass
    reasons = _reasons(row_problems(df, schema))
    good = np.ones(n, dtype=bool)
    good[list(reasons)] = False
    if not good.any():
        return df.iloc[:0], good, _as_rejects(reasons)
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
    return valid, good, _as_rejects(reasons)


def _as_series(arr: pa.Array, name: str) -> pd.Series[Any]:
    """One column as :func:`ferry.data.read_table` would type it (the pandas route, for unusual Arrow types)."""
    frame = fdata.normalise_dtypes(pa.table({name: arr}).to_pandas())
    col: pd.Series[Any] = frame[name]
    return col


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _dictionary(arr: pa.Array) -> tuple[Codes, list[Any]] | None:
    """Codes into the distinct text values (``len(values)`` for null), or None when ``arr`` is not text."""
    if pa.types.is_dictionary(arr.type):
        if not _is_text(arr.type.value_type):
            return None
        encoded = arr
    elif _is_text(arr.type):
        encoded = pc.dictionary_encode(arr)
    else:
        return None
    values = encoded.dictionary.to_pylist()
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, len(values))
    codes: Codes = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.intp)
    return codes, values


def _arrow_numeric(arr: pa.Array, name: str) -> tuple[FloatArray, BoolArray, BoolArray]:
    """(float64 values with NaN for missing, not-a-number mask, NaN/inf-written-as-number mask), as parse_numeric."""
    t = arr.type
    n = len(arr)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        if not pa.types.is_float64(t):
            arr = pc.cast(arr, pa.float64(), safe=False)
        values = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
        return values, np.zeros(n, dtype=bool), np.isinf(values)
    coded = _dictionary(arr)
    if coded is None:
        return fdata.parse_numeric(_as_series(arr, name))
    codes, distinct = coded
    values, bad_type, nonfinite = fdata.parse_numeric(pd.Series(distinct, dtype=object))
    return (
        fdata.spread(values, codes, np.nan),
        fdata.spread(bad_type, codes, False),
        fdata.spread(nonfinite, codes, False),
    )


def _arrow_text(arr: pa.Array, name: str) -> tuple[Codes, ObjectArray]:
    """Codes into labels (str, or None for missing; the last label is None), as coded_text."""
    coded = _dictionary(arr)
    if coded is None:
        return fdata.coded_text(_as_series(arr, name))
    codes, distinct = coded
    labels = np.empty(len(distinct) + 1, dtype=object)
    labels[:-1] = [fdata.category_label(v) if v is not None else None for v in distinct]
    labels[-1] = None
    return codes, labels


def _arrow_timestamp(arr: pa.Array, name: str) -> tuple[BoolArray, BoolArray]:
    """(bad, missing) masks of a timestamp column, as the pandas route computes them."""
    t = arr.type
    if pa.types.is_timestamp(t) and t.unit == "ns":
        # Every int64 nanosecond count lies within pandas' Timestamp range, so only nulls can be wrong (and the
        # smallest int64, which pandas reads as NaT).
        nat = pc.equal(arr.view(pa.int64()), pa.scalar(np.iinfo(np.int64).min, pa.int64()))
        missing = np.asarray(pc.or_kleene(arr.is_null(), nat).to_numpy(zero_copy_only=False), dtype=bool)
        return np.zeros(len(arr), dtype=bool), missing
    coded = _dictionary(arr)
    if coded is None:
        return _pandas_timestamp(_as_series(arr, name))
    codes, distinct = coded
    bad, missing = _pandas_timestamp(pd.Series(distinct, dtype=object))
    return fdata.spread(bad, codes, False), fdata.spread(missing, codes, True)


def _column(batch: pa.RecordBatch, name: str) -> pa.Array | None:
    i = batch.schema.get_field_index(name)
    return None if i < 0 else batch.column(i)


def _pandas_route(batch: pa.RecordBatch, schema: Schema) -> Checked:
    valid, good, rejects = split_rows(fdata.normalise_dtypes(batch.to_pandas()), schema)
    if not good.any():
        return Checked(batch.num_rows, good, rejects, None)
    inputs = fdata.to_onnx_inputs(valid, schema)
    frame = valid[list(schema.feature_names)].set_axis(np.flatnonzero(good))
    return Checked(batch.num_rows, good, rejects, inputs, Typed(frame=frame))


def check_batch(batch: pa.RecordBatch, schema: Schema) -> Checked:
    """Check one record batch against ``schema`` row by row and encode its good rows for ``model.onnx``.

    The rules, the reject reasons and their order, and the ONNX inputs are those of :func:`split_rows` followed by
    :func:`ferry.data.to_onnx_inputs`; only the route is faster.
    """
    n = batch.num_rows
    names = batch.schema.names
    if len(set(names)) != len(names):
        return _pandas_route(batch, schema)
    problems: list[Problem] = []
    for name in [c for c in (schema.id, schema.timestamp) if c is not None] + list(schema.feature_names):
        if name not in names:
            problems.append(_required(name, n))
    if schema.id is not None and (ids := _column(batch, schema.id)) is not None:
        problems.append(_id_problem(schema.id, _arrow_id_lengths(ids), schema.max_text_length))
    if schema.timestamp is not None and (ts := _column(batch, schema.timestamp)) is not None:
        problems.extend(_timestamp_problems(schema.timestamp, *_arrow_timestamp(ts, schema.timestamp)))
    encoders: list[tuple[str, Callable[[BoolArray | None], np.ndarray[Any, Any]]]] = []
    numeric: dict[str, FloatArray] = {}
    coded: dict[str, tuple[Codes, ObjectArray]] = {}
    for f in schema.features:
        if (arr := _column(batch, f.name)) is None:
            continue
        if f.type == "numeric":
            values, bad_type, nonfinite = _arrow_numeric(arr, f.name)
            problems.extend(_numeric_problems(f, values, bad_type, nonfinite))
            encoders.append((f.name, _numeric_encoder(values)))
            numeric[f.name] = values
        else:
            codes, labels = _arrow_text(arr, f.name)
            problems.extend(_categorical_problems(f, codes, labels, schema.text_limit(f.name)))
            encoders.append((f.name, _text_encoder(codes, labels)))
            coded[f.name] = (codes, labels)
    typed = Typed(numeric, coded, order=list(schema.feature_names))
    problems = [p for p in problems if p.mask.any()]
    if not problems:
        return Checked(n, np.ones(n, dtype=bool), [], {name: encode(None) for name, encode in encoders}, typed)
    reasons = _reasons(problems)
    good = np.ones(n, dtype=bool)
    good[list(reasons)] = False
    if not good.any():
        return Checked(n, good, _as_rejects(reasons), None)
    return Checked(n, good, _as_rejects(reasons), {name: encode(good) for name, encode in encoders}, typed)


def _numeric_encoder(values: FloatArray) -> Callable[[BoolArray | None], np.ndarray[Any, Any]]:
    def encode(good: BoolArray | None) -> np.ndarray[Any, Any]:
        kept = values if good is None else values[good]
        return kept.astype(np.float32).reshape(-1, 1)

    return encode


def _text_encoder(codes: Codes, labels: ObjectArray) -> Callable[[BoolArray | None], np.ndarray[Any, Any]]:
    def encode(good: BoolArray | None) -> np.ndarray[Any, Any]:
        text = labels.copy()
        text[-1] = ""
        text[np.array([label is None for label in labels], dtype=bool)] = ""
        kept = codes if good is None else codes[good]
        out: np.ndarray[Any, Any] = text[kept].reshape(-1, 1)
        return out

    return encode
