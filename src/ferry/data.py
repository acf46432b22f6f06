"""Reading tables and checking them against the declared schema.

Everything that enters training, scoring or monitoring passes through here:

- :func:`read_table` reads CSV or Parquet from a local path or any fsspec URL, with one normalised dtype policy
  (numbers -> float64, text -> object of ``str``), and turns every way a file can be unusable into a
  :class:`~ferry.errors.DataFormatError` that names the file and says what to do.
- :func:`validate` returns a new, typed frame holding exactly the declared columns — never the PII ones — or raises
  :class:`~ferry.errors.DataValidationError` naming the column, the rule, how many rows break it and a few of them.
  Bad rows are never silently dropped.
- :func:`to_onnx_inputs` builds the exact input dict of ``model.onnx``; training, batch and online all use it, so a
  row is encoded identically everywhere.
- :func:`sha256_of` fingerprints the training file for lineage.
- The column rules :func:`validate` applies (:func:`parse_numeric`, :func:`coded_text`, :func:`category_label`,
  :func:`timestamp_masks`, :func:`normalise_dtypes`, :func:`spread`) are public for :mod:`ferry.batch.rows`, which
  applies the same rules to Arrow record batches.

One concept kept whole (about 530 lines): reading and validating share the per-value rules and the dtype policy,
and :mod:`ferry.batch.rows` reuses those rules value by value.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api import types as ptypes

from ferry import storage, target
from ferry.errors import DataFormatError, DataValidationError
from ferry.schema import Feature, Schema

__all__ = [
    "category_label",
    "coded_text",
    "normalise_dtypes",
    "parse_numeric",
    "read_table",
    "resolve_task",
    "sha256_of",
    "show_id",
    "spread",
    "timestamp_masks",
    "to_onnx_inputs",
    "validate",
]

_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_PARQUET_MAGIC = b"PAR1"
_CHUNK = 1 << 20
_MAX_EXAMPLES = 3
_NAN_TEXT = frozenset({"nan", "+nan", "-nan"})
_TS_MIN = pd.Timestamp.min.tz_localize("UTC")
_TS_MAX = pd.Timestamp.max.tz_localize("UTC")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]


# ----------------------------------------------------------------------------------------------------------- reading


def _stat(url: str, fs: Any, path: str) -> int:
    """Size of the file in bytes, or DataFormatError when it is missing or not a file."""
    try:
        if not fs.exists(path):
            raise DataFormatError(f"{url}: file not found; check the path or URL")
        if fs.isdir(path):
            raise DataFormatError(f"{url}: is a directory; pass a single CSV or Parquet file")
        return int(fs.size(path))
    except (PermissionError, OSError) as exc:
        raise DataFormatError(f"{url}: cannot access the file ({exc}); check permissions and credentials") from None


def read_table(url: str | Path, *, storage_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file from a local path or any fsspec URL into a DataFrame.

    The format comes from the suffix (``.csv``, ``.csv.gz``, ``.parquet``, ``.pq``); any other name is read as
    Parquet when it starts with the magic bytes ``PAR1``. Numeric columns come back as float64 (so a partition with
    a missing value has the same dtype as one without), text as object dtype holding ``str`` with None for missing;
    booleans and timestamps keep their dtype. A file with no rows is an error: there is nothing to learn or score.
    """
    source = str(url)
    fs, path = storage.open_fs(source, storage_options, data=True)
    size = _stat(source, fs, path)
    if size == 0:
        raise DataFormatError(f"{source}: the file is empty (0 bytes); write the data again or point at another file")
    name = path.lower()
    if name.endswith(_CSV_SUFFIXES):
        frame = _read_csv(source, fs, path)
    elif name.endswith(_PARQUET_SUFFIXES):
        frame = _read_parquet(source, fs, path)
    else:
        with fs.open(path, "rb") as fh:
            head = fh.read(len(_PARQUET_MAGIC))
        if head != _PARQUET_MAGIC:
            raise DataFormatError(
                f"{source}: unknown file format; name it .csv, .csv.gz, .parquet or .pq (Parquet is also "
                "recognised by its PAR1 magic bytes)"
            )
        frame = _read_parquet(source, fs, path)
    if len(frame) == 0:
        raise DataFormatError(f"{source}: the file has a header but no rows; write the data again")
    return normalise_dtypes(frame)


def _read_csv(source: str, fs: Any, path: str) -> pd.DataFrame:
    try:
        with fs.open(path, "rb", compression="infer") as fh:
            return pd.read_csv(fh, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{source}: the file has no header and no rows; write the data again") from None
    except pd.errors.ParserError as exc:
        raise DataFormatError(
            f"{source}: cannot parse as CSV ({str(exc).strip()}); check the delimiter (comma), quoting and that "
            "every row has as many fields as the header"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{source}: is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV, or is it binary?"
        ) from None
    except (EOFError, zlib.error, OSError) as exc:
        raise DataFormatError(
            f"{source}: the compressed file is corrupt or truncated ({exc}); write it again"
        ) from None


def _read_parquet(source: str, fs: Any, path: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataFormatError(
            f"{source}: not a readable Parquet file ({exc}); it is corrupt or truncated, write it again"
        ) from None
    frame: pd.DataFrame = table.to_pandas()
    return frame


def normalise_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers -> float64, text (and pandas categoricals) -> object of str with None; bool and datetime stay."""
    columns: dict[Any, pd.Series[Any]] = {}
    for name in frame.columns:
        col = frame[name]
        if ptypes.is_bool_dtype(col) or ptypes.is_datetime64_any_dtype(col) or ptypes.is_timedelta64_dtype(col):
            columns[name] = col
        elif ptypes.is_numeric_dtype(col):
            columns[name] = pd.Series(col.to_numpy(dtype=np.float64, na_value=np.nan), index=col.index, name=name)
        else:
            obj = col.astype(object)
            columns[name] = obj.where(col.notna(), None)
    return pd.DataFrame(columns, index=frame.index)


def sha256_of(url: str | Path, *, storage_options: dict[str, Any] | None = None) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (works for files larger than memory)."""
    source = str(url)
    fs, path = storage.open_fs(source, storage_options, data=True)
    _stat(source, fs, path)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -------------------------------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Issue:
    column: str
    rule: str
    detail: str
    examples: list[str]


class _Rows:
    """Names rows in messages: by the declared id column when present, otherwise by 0-based position."""

    def __init__(self, df: pd.DataFrame, schema: Schema) -> None:
        self.n = len(df)
        self._ids: pd.Series[Any] | None = None
        if schema.id is not None and schema.id in df.columns and isinstance(df.columns.get_loc(schema.id), int):
            self._ids = df[schema.id]

    def name(self, pos: int) -> str:
        if self._ids is None:
            return f"row {pos}"
        return f"row id={show_id(self._ids.iloc[pos])}"

    def examples(self, mask: BoolArray, col: pd.Series[Any] | FloatArray | ObjectArray) -> list[str]:
        """Up to three offending rows of ``mask``, each with its value in ``col`` (input column or parsed array)."""
        out = []
        for pos in np.flatnonzero(mask)[:_MAX_EXAMPLES].tolist():
            value = col.iloc[pos] if isinstance(col, pd.Series) else col[pos]
            out.append(f"{self.name(pos)}: {_show(value)}")
        return out

    def count(self, mask: BoolArray) -> str:
        return f"{int(mask.sum()):,} of {self.n:,} rows"


def show_id(value: object) -> str:
    """A row id as text for messages and rejects files: whole floats lose their ".0"."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _show(value: object) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return "<missing>"
    if isinstance(value, float | np.floating):
        return "<missing>" if np.isnan(value) else repr(float(value))
    if isinstance(value, np.generic):
        return repr(value.item())
    return repr(value)


def _is_blank(value: object) -> bool:
    """Whitespace-only strings mean "missing", like an empty CSV cell."""
    return isinstance(value, str) and not value.strip()


def _factorize(col: pd.Series[Any]) -> tuple[npt.NDArray[np.intp], ObjectArray]:
    """Codes into the distinct values, with -1 for missing. Rules then run once per distinct value, not per row."""
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.intp), np.asarray(uniques, dtype=object)


def _without_blanks(uniques: ObjectArray, blank: BoolArray) -> pd.Series[Any]:
    values = uniques.copy()
    values[blank] = None
    return pd.Series(values, dtype="object")


def spread(per_unique: npt.NDArray[Any], codes: npt.NDArray[np.intp], missing: Any) -> npt.NDArray[Any]:
    """Per-row values from per-distinct-value ones; rows coded -1 (or ``len(per_unique)``: missing) get
    ``missing``."""
    table = np.empty(len(per_unique) + 1, dtype=per_unique.dtype)
    table[:-1] = per_unique
    table[-1] = missing
    out: npt.NDArray[Any] = table[codes]
    return out


def parse_numeric(col: pd.Series[Any]) -> tuple[FloatArray, BoolArray, BoolArray]:
    """Column as float64 (NaN = missing), plus masks of values that are not numbers and of NaN/inf values."""
    n = len(col)
    if ptypes.is_bool_dtype(col) or (ptypes.is_numeric_dtype(col) and not ptypes.is_complex_dtype(col)):
        values = np.array(col.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64, copy=True)
        return values, np.zeros(n, dtype=bool), np.isinf(values)
    if ptypes.is_datetime64_any_dtype(col) or ptypes.is_timedelta64_dtype(col) or ptypes.is_complex_dtype(col):
        present = col.notna().to_numpy(dtype=bool)
        return np.full(n, np.nan), present, np.zeros(n, dtype=bool)
    codes, uniques = _factorize(col)
    blank = np.array([_is_blank(u) for u in uniques], dtype=bool)
    candidates = _without_blanks(uniques, blank)
    parsed = np.array(pd.to_numeric(candidates, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    unparsed = ~blank & np.isnan(parsed)
    nan_text = unparsed & np.array([str(u).strip().lower() in _NAN_TEXT for u in uniques], dtype=bool)
    bad_type = unparsed & ~nan_text
    nonfinite = nan_text | np.isinf(parsed)
    parsed[bad_type | nan_text] = np.nan
    return spread(parsed, codes, np.nan), spread(bad_type, codes, False), spread(nonfinite, codes, False)


def category_label(value: object) -> str | None:
    """A category value as text (None when blank); whole floats lose their ".0" so 1.0 matches the level "1"."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def coded_text(col: pd.Series[Any]) -> tuple[npt.NDArray[np.intp], ObjectArray]:
    """The column as codes into a label table of str whose last entry is None (missing); see :func:`_text`."""
    codes, uniques = _factorize(col)
    labels = np.empty(len(uniques) + 1, dtype=object)
    labels[:-1] = [category_label(u) for u in uniques]
    labels[-1] = None
    codes = np.where(codes < 0, len(uniques), codes)
    return codes, labels


def _text(col: pd.Series[Any]) -> tuple[ObjectArray, BoolArray]:
    """Column as an object array of str with None for missing (blank strings count as missing), plus that mask."""
    codes, labels = coded_text(col)
    is_missing = np.array([label is None for label in labels], dtype=bool)
    text: ObjectArray = labels[codes]
    return text, is_missing[codes]


def _check_numeric(col: pd.Series[Any], feature: Feature, rows: _Rows) -> tuple[FloatArray, _Issue | None]:
    name = feature.name
    values, bad_type, nonfinite = parse_numeric(col)
    if bad_type.any():
        detail = f"{rows.count(bad_type)} hold values that are not numbers; fix them or leave the cells empty"
        return values, _Issue(name, "numeric_type", detail, rows.examples(bad_type, col))
    if nonfinite.any():
        detail = (
            f"{rows.count(nonfinite)} hold infinite or NaN values written out as numbers; leave missing values "
            "empty and replace infinities with real values"
        )
        return values, _Issue(name, "finite", detail, rows.examples(nonfinite, col))
    missing = np.isnan(values)
    if not feature.nullable and missing.any():
        detail = f"{rows.count(missing)} are missing; fill them, or declare nullable: true in the schema"
        return values, _Issue(name, "not_null", detail, rows.examples(missing, col))
    low = feature.min if feature.min is not None else -np.inf
    high = feature.max if feature.max is not None else np.inf
    with np.errstate(invalid="ignore"):
        outside = ~missing & ((values < low) | (values > high))
    if outside.any():
        lo = "-inf" if feature.min is None else f"{feature.min:g}"
        hi = "inf" if feature.max is None else f"{feature.max:g}"
        detail = (
            f"{rows.count(outside)} are outside the declared range [{lo}, {hi}]; fix the data, or change min/max "
            "in the schema if the range was wrong"
        )
        return values, _Issue(name, "range", detail, rows.examples(outside, values))
    return values, None


def _too_long(
    col: pd.Series[Any],
    name: str,
    limit: int,
    rows: _Rows,
    coded: tuple[npt.NDArray[np.intp], ObjectArray] | None = None,
) -> _Issue | None:
    """The max_length issue of a text column whose values (as text) exceed ``limit`` characters, or None."""
    codes, labels = coded if coded is not None else coded_text(col)
    long_labels = np.array([label is not None and len(label) > limit for label in labels], dtype=bool)
    if not long_labels.any():
        return None
    longest = max(len(label) for label in labels[long_labels])
    detail = (
        f"{rows.count(long_labels[codes])} hold text longer than {limit} characters (up to {longest:,}); shorten "
        f"it, or raise max_length in the schema"
    )
    return _Issue(name, "max_length", detail, rows.examples(long_labels[codes], col.astype(str).str.slice(0, 40)))


def _check_categorical(
    col: pd.Series[Any], feature: Feature, rows: _Rows, limit: int
) -> tuple[ObjectArray, _Issue | None]:
    name = feature.name
    codes, labels = coded_text(col)
    text: ObjectArray = labels[codes]
    missing = np.array([label is None for label in labels], dtype=bool)[codes]
    if not feature.nullable and missing.any():
        detail = f"{rows.count(missing)} are missing; fill them, or declare nullable: true in the schema"
        return text, _Issue(name, "not_null", detail, rows.examples(missing, col))
    if (issue := _too_long(col, name, limit, rows, (codes, labels))) is not None:
        return text, issue
    if feature.levels is not None and not feature.allow_unknown:
        known = set(feature.levels)
        unknown_labels = np.array([label is not None and label not in known for label in labels], dtype=bool)
        if unknown_labels.any():
            unknown = unknown_labels[codes]
            seen = sorted(str(label) for label in labels[unknown_labels])
            shown = ", ".join(repr(v) for v in seen[:5]) + (", ..." if len(seen) > 5 else "")
            detail = (
                f"{rows.count(unknown)} hold categories outside the declared levels "
                f"({', '.join(feature.levels)}): {shown}; fix the data, add the levels to the schema, or set "
                "allow_unknown: true"
            )
            return text, _Issue(name, "levels", detail, rows.examples(unknown, col))
    return text, None


def _check_target(col: pd.Series[Any], schema: Schema, rows: _Rows) -> tuple[npt.NDArray[Any], _Issue | None]:
    """The target encoded per task (:mod:`ferry.target`), or the issue of its first broken rule."""
    if schema.kind == "multiclass" and not schema.target_classes:
        detail = "fewer than three distinct labels; a multiclass target needs three or more, with two use task: binary"
        return np.zeros(0), _Issue(schema.target, "target_classes", detail, [])
    if schema.kind == "regression":
        values, bad_type, nonfinite = parse_numeric(col)
        encoded: npt.NDArray[Any]
        encoded, problem = target.encode_values(values, bad_type, nonfinite, schema, rows.count, rows.n)
    else:
        codes, labels = coded_text(col.astype("Int64") if ptypes.is_bool_dtype(col) else col)
        encoded, problem = target.encode_classes(codes, labels, schema, rows.count, rows.n)
    if problem is None:
        return encoded, None
    examples = rows.examples(problem.rows, col) if problem.rows is not None else []
    return encoded, _Issue(schema.target, problem.rule, problem.detail, examples)


def resolve_task(df: pd.DataFrame, schema: Schema) -> tuple[Schema, str | None]:
    """The schema with its task settled, and a one-line note when it was inferred from ``df``'s target column.

    A schema that declares its task, its classes or its target bounds is returned as it is (note None), unless it
    is a multiclass one whose classes are left to be discovered. Missing target values are left for
    :func:`validate` to report.
    """
    discover = schema.task == "multiclass"
    if not schema.infers_task or schema.target not in df.columns:
        return schema, None
    col = df[schema.target]
    if isinstance(col, pd.DataFrame):
        return schema, None
    codes, labels = coded_text(col.astype("Int64") if ptypes.is_bool_dtype(col) else col)
    present = sorted({label for label in labels[np.unique(codes)] if label is not None})
    numbers = np.array(pd.to_numeric(pd.Series(present, dtype=object), errors="coerce"), dtype=np.float64)
    task, classes, how = target.infer(present, numbers)
    if task != "regression" and len(classes) < 2:
        only = f"the value {classes[0]!r}" if classes else "no value"
        raise DataValidationError(
            schema.target,
            "target_constant",
            f"all {len(col):,} rows have {only}; a model needs a target that varies, so use a wider time range "
            "or a larger sample",
        )
    if discover:
        if task == "regression" or not classes:
            classes = tuple(present)
        if len(classes) < 3:
            return schema, None  # validate() reports the rows; the schema rule needs three classes
        task, how = "multiclass", f"multiclass with {len(classes)} classes discovered in the data"
    return schema.resolved(task, classes), f"task of {schema.target!r} inferred: {how}; declare task: to fix it"


_WORK_UNIT: Final = "datetime64[us, UTC]"
"""Parsing works in microseconds (±290,000 years), so out-of-range values are caught rather than overflowing."""


def _parse_timestamps(col: pd.Series[Any]) -> tuple[pd.Series[Any], BoolArray, BoolArray]:
    """Timestamps in UTC (NaT where missing or unparseable), the missing mask and the unparseable mask."""
    n = len(col)
    if ptypes.is_datetime64_any_dtype(col):
        stamps = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        missing = stamps.isna().to_numpy(dtype=bool)
        return stamps.astype(_WORK_UNIT), missing, np.zeros(n, dtype=bool)
    if ptypes.is_numeric_dtype(col) or ptypes.is_bool_dtype(col):
        # Epoch numbers are ambiguous (seconds? milliseconds?): ask for ISO 8601 text instead.
        missing = col.isna().to_numpy(dtype=bool)
        return pd.Series(pd.NaT, index=col.index, dtype=_WORK_UNIT), missing, ~missing
    codes, uniques = _factorize(col)
    blank = np.array([_is_blank(u) for u in uniques], dtype=bool)
    candidates = _without_blanks(uniques, blank)
    parsed = pd.to_datetime(candidates, utc=True, format="ISO8601", errors="coerce").astype(_WORK_UNIT)
    retry = np.flatnonzero(~blank & parsed.isna().to_numpy(dtype=bool))
    if len(retry):  # a few values in another layout ("01/02/2025 10:00"): parse those one by one
        again = pd.to_datetime(candidates.iloc[retry], utc=True, format="mixed", errors="coerce")
        parsed.iloc[retry] = again.astype(_WORK_UNIT)
    unparsed = ~blank & parsed.isna().to_numpy(dtype=bool)
    stamps = pd.Series(parsed.array.take(codes, allow_fill=True), index=col.index)
    return stamps, spread(blank, codes, True), spread(unparsed, codes, False)


def timestamp_masks(col: pd.Series[Any]) -> tuple[pd.Series[Any], BoolArray, BoolArray]:
    """Timestamps in UTC, the mask of values that are not timestamps pandas can hold (1677 to 2262), and the mask of
    missing ones."""
    stamps, missing, unparsed = _parse_timestamps(col)
    within = ((stamps >= _TS_MIN) & (stamps <= _TS_MAX)).to_numpy(dtype=bool, na_value=False)
    return stamps, unparsed | (~missing & ~unparsed & ~within), missing


def _check_timestamp(col: pd.Series[Any], name: str, rows: _Rows) -> tuple[pd.Series[Any] | None, _Issue | None]:
    stamps, bad, missing = timestamp_masks(col)
    if bad.any():
        detail = (
            f"{rows.count(bad)} are not timestamps between 1677 and 2262; write them as ISO 8601, "
            "e.g. 2025-01-31T12:00:00Z"
        )
        return None, _Issue(name, "timestamp_type", detail, rows.examples(bad, col))
    if missing.any():
        detail = f"{rows.count(missing)} have no timestamp, which the time-based split needs; fill or drop them"
        return None, _Issue(name, "not_null", detail, rows.examples(missing, col))
    return stamps.astype("datetime64[ns, UTC]"), None


def validate(df: pd.DataFrame, schema: Schema, *, require_target: bool = True) -> pd.DataFrame:
    """Check ``df`` against ``schema`` and return a new, typed frame of exactly the declared columns.

    The result has the id (as given), the timestamp (datetime64[ns, UTC]), every feature in declared order
    (numeric -> float64 with NaN for missing; categorical -> object of str with None for missing) and, when
    ``require_target``, the target encoded per task (:mod:`ferry.target`: binary int64 0/1 with 1 = the positive
    class, multiclass int64 class index, regression float64). Every other column — PII included — is
    dropped. ``df`` is not modified, and the result keeps its index.

    Columns are checked in the order id, timestamp, features, target; each reports the first rule it breaks. The
    first failing column raises DataValidationError (with the count of offending rows and up to three examples);
    the message also lists the other failing columns, so one run shows everything to fix.
    """
    rows = _Rows(df, schema)
    out: dict[str, Any] = {}
    issues: list[_Issue] = []
    available = set(df.columns)

    def column(name: str) -> pd.Series[Any] | None:
        if name not in available:
            shown = ", ".join(map(repr, list(df.columns)[:20])) + (", ..." if df.shape[1] > 20 else "")
            issues.append(_Issue(name, "required", f"the column is missing; the data has {shown or 'no columns'}", []))
            return None
        col = df[name]
        if isinstance(col, pd.DataFrame):
            issues.append(_Issue(name, "required", f"the column appears {col.shape[1]} times; keep one", []))
            return None
        return col

    if schema.id is not None and (col := column(schema.id)) is not None:
        out[schema.id] = col.copy()
        if (issue := _too_long(col, schema.id, schema.max_text_length, rows)) is not None:
            issues.append(issue)
    if schema.timestamp is not None and (col := column(schema.timestamp)) is not None:
        stamps, issue = _check_timestamp(col, schema.timestamp, rows)
        if issue is not None:
            issues.append(issue)
        elif stamps is not None:
            out[schema.timestamp] = stamps
    for feature in schema.features:
        if (col := column(feature.name)) is None:
            continue
        if feature.type == "numeric":
            values, issue = _check_numeric(col, feature, rows)
            out[feature.name] = pd.Series(values, index=df.index, dtype=np.float64)
        else:
            text, issue = _check_categorical(col, feature, rows, schema.text_limit(feature.name))
            out[feature.name] = pd.Series(text, index=df.index, dtype=object)
        if issue is not None:
            issues.append(issue)
    if require_target and (col := column(schema.target)) is not None:
        if schema.infers_task:
            schema, _ = resolve_task(df, schema)
        labels, issue = _check_target(col, schema, rows)
        if issue is not None:
            issues.append(issue)
        else:
            out[schema.target] = pd.Series(labels, index=df.index, dtype=labels.dtype)

    if issues:
        first = issues[0]
        detail = first.detail
        if len(issues) > 1:
            others = ", ".join(f"{i.column!r} ({i.rule})" for i in issues[1:])
            detail += f" [other failing columns: {others}]"
        raise DataValidationError(first.column, first.rule, detail, first.examples)
    return pd.DataFrame(out, index=df.index)


# -------------------------------------------------------------------------------------------------------------- ONNX


def to_onnx_inputs(df: pd.DataFrame, schema: Schema) -> dict[str, np.ndarray[Any, Any]]:
    """The input dict of ``model.onnx``: one (n, 1) array per feature, keyed by feature name.

    Numeric features are float32 with NaN for missing; categorical ones are object arrays of str with missing as
    "" (ONNX string tensors have no null). Pass a frame returned by :func:`validate`.
    """
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    for feature in schema.features:
        if feature.name not in df.columns:
            raise DataValidationError(
                feature.name, "required", "the column is missing; pass the frame returned by ferry.data.validate()"
            )
        col = df[feature.name]
        if feature.type == "numeric":
            try:
                values = col.to_numpy(dtype=np.float32, na_value=np.nan)
            except (TypeError, ValueError) as exc:
                raise DataValidationError(
                    feature.name, "numeric_type", f"cannot convert to float32 ({exc}); run ferry.data.validate() first"
                ) from None
            inputs[feature.name] = values.reshape(-1, 1)
        else:
            text, missing = _text(col)
            text[missing] = ""
            inputs[feature.name] = text.reshape(-1, 1)
    return inputs
