"""Request records -> the checked input dict of ``model.onnx``, or :class:`RequestRejected` naming the field.

JSON is typed, so types are checked strictly first (numeric features take JSON numbers, categorical ones strings,
either may be null); then the schema's own rules run through :func:`ferry.data.validate` (nullable, range, levels),
so a record is judged online exactly as a row is in training and batch. Records that pass every rule take a
pandas-free path that applies the same rules (a request is dominated by pandas otherwise); any failure goes
through ``ferry.data`` itself, so errors read the same as in training. Every feature must be present; the id,
timestamp, target and PII fields may be sent and are ignored (PII never reaches the model or a log).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ferry.data import to_onnx_inputs, validate
from ferry.errors import DataError, DataValidationError
from ferry.schema import Schema

__all__ = ["RequestRejected", "Served", "check_text", "parse_json", "prepare", "slow_inputs", "to_records"]


MAX_FIELD_CHARS = 200
MAX_REASON_CHARS = 1000
"""How much of a field name and of a reason an answer shows: a request's own values are quoted in reasons, and a
1 MB bad value must not come back as a 2 MB answer."""


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters in all)"


class RequestRejected(DataError):
    """A request the service refuses: ``status`` (400, 409, 413 or 422), the ``field`` at fault (or None), the ``rule``.

    The field and the reason are capped (:data:`MAX_FIELD_CHARS`, :data:`MAX_REASON_CHARS`), whatever they quote.
    """

    def __init__(self, status: int, field: str | None, rule: str, reason: str) -> None:
        self.status = status
        self.field = None if field is None else cap(field, MAX_FIELD_CHARS)
        self.rule = rule
        self.reason = cap(reason, MAX_REASON_CHARS)
        field, reason = self.field, self.reason
        where = f"field {field!r}" if field is not None else "request"
        super().__init__(f"{where} breaks rule {rule!r}: {reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "field": self.field, "rule": self.rule, "reason": self.reason}


class Rule(NamedTuple):
    """One feature's rules, unpacked for the per-value loop."""

    name: str
    numeric: bool
    nullable: bool
    min: float | None
    max: float | None
    levels: frozenset[str] | None  # None: any string
    max_length: int  # longest text of a categorical value


@dataclass(frozen=True)
class Served:
    """The schema as the service applies it: features only (no id, timestamp or target columns required)."""

    schema: Schema
    features: Schema
    allowed: frozenset[str]
    levels: dict[str, frozenset[str]]  # categorical features that refuse unknown categories
    rules: tuple[Rule, ...] = ()  # per feature, in schema order, for the value-by-value check of small requests
    numeric_names: tuple[str, ...] = ()  # the numeric features, in schema order
    text_names: tuple[str, ...] = ()  # the categorical features, in schema order
    class_keys: tuple[str, ...] = ()  # a classifier's classes as the answer's probability keys

    @classmethod
    def of(cls, schema: Schema) -> Served:
        features = schema.model_copy(update={"id": None, "timestamp": None})
        extra = {schema.target, *schema.pii}
        extra.update(c for c in (schema.id, schema.timestamp) if c is not None)
        levels = {f.name: frozenset(f.levels) for f in schema.features if f.levels is not None and not f.allow_unknown}
        allowed = frozenset({*schema.feature_names, *extra})
        rules = tuple(
            Rule(f.name, f.type == "numeric", f.nullable, f.min, f.max, levels.get(f.name), schema.text_limit(f.name))
            for f in schema.features
        )
        return cls(
            schema=schema,
            features=features,
            allowed=allowed,
            levels=levels,
            rules=rules,
            numeric_names=tuple(r.name for r in rules if r.numeric),
            text_names=tuple(r.name for r in rules if not r.numeric),
            class_keys=tuple(str(c) for c in schema.target_classes),
        )


def _reject_constant(name: str) -> float:
    return math.nan  # NaN / Infinity literals parse, then the field check names the field that holds them


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(body: bytes) -> Any:
    """Parse a request body (UTF-8, -16 or -32, as :func:`json.loads` reads bytes); malformed JSON is a 400.

    Every text in the result, key or value, is then known to be encodable as UTF-8 (:func:`check_text`): JSON lets
    a string hold a lone surrogate (``"\\ud800"``) that no UTF-8 writer, onnxruntime or Parquet, can take.
    """
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        payload = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestRejected(400, None, "json", f"the body is not valid JSON ({exc}); send a JSON object") from None
    except RecursionError:
        raise RequestRejected(400, None, "json", "the body nests arrays or objects too deeply") from None
    if "\\u" in text or not text.isascii():  # only escapes and non-ASCII text can make a surrogate
        check_text(payload)
    return payload


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(payload: Any, path: str = "") -> None:
    """RequestRejected (422, rule ``utf8``) naming the first key or string of ``payload`` that UTF-8 cannot encode.

    The field is named as a path into the body, e.g. ``records[2].customer_id``; the bad text is not echoed.
    """
    stack: list[tuple[str, Any]] = [(path, payload)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if not _utf8(value):
                raise RequestRejected(
                    422, where or None, "utf8",
                    "holds text that UTF-8 cannot encode (a lone surrogate such as \\ud800); send valid Unicode",
                )  # fmt: skip
        elif isinstance(value, Mapping):
            for key, item in reversed(list(value.items())):
                name = f"{where}.{key}" if where else str(key)
                if not _utf8(name):
                    shown = name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
                    raise RequestRejected(
                        422, shown, "utf8", "is a field name that UTF-8 cannot encode (a lone surrogate); send valid "
                        "Unicode",
                    )  # fmt: skip
                stack.append((name, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in reversed(list(enumerate(value))))


def to_records(payload: Any, *, max_records: int) -> tuple[list[Mapping[str, Any]], bool]:
    """One record (an object) or a list of them -> (records, whether a single record was sent)."""
    if isinstance(payload, Mapping):
        return [payload], True
    if not isinstance(payload, list):
        raise RequestRejected(
            422, None, "records", f"expected a record (object) or a list of records, got {type(payload).__name__}"
        )
    if not payload:
        raise RequestRejected(422, None, "records", "the list of records is empty; send at least one")
    if len(payload) > max_records:
        raise RequestRejected(
            413, None, "max_records", f"{len(payload)} records exceed the limit of {max_records}; split the request"
        )
    for i, item in enumerate(payload):
        if not isinstance(item, Mapping):
            raise RequestRejected(422, f"[{i}]", "record", f"record {i} is a {type(item).__name__}, not an object")
    return payload, False


def _id_too_long(value: Any, limit: int) -> bool:
    """An id (any JSON value; it is logged as text) longer than ``limit`` characters as text."""
    return value is not None and len(value if type(value) is str else str(value)) > limit


def _where(name: str, i: int, n: int) -> str:
    return name if n == 1 else f"[{i}].{name}"


def _columns(records: Sequence[Mapping[str, Any]], served: Served) -> dict[str, np.ndarray[Any, Any]]:
    n = len(records)
    schema = served.schema
    for i, record in enumerate(records):
        for key in record:
            if key not in served.allowed:
                raise RequestRejected(
                    422, _where(str(key), i, n), "unknown_field",
                    f"is not a field of model {schema.name!r}; its features are {', '.join(schema.feature_names)}",
                )  # fmt: skip
    if schema.id is not None:
        limit = schema.max_text_length
        for i, record in enumerate(records):
            value = record.get(schema.id)
            if _id_too_long(value, limit):
                raise RequestRejected(
                    422, _where(schema.id, i, n), "max_length", f"is longer than {limit} characters; send a shorter id"
                )
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for feature in schema.features:
        name = feature.name
        numeric = feature.type == "numeric"
        values = np.empty(n, dtype=np.float64 if numeric else object)
        for i, record in enumerate(records):
            if name not in record:
                raise RequestRejected(
                    422, _where(name, i, n), "required", "is missing; send every feature (null where it is unknown)"
                )
            value = record[name]
            if value is None:
                values[i] = np.nan if numeric else None
            elif numeric:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise RequestRejected(
                        422, _where(name, i, n), "numeric_type", f"expected a number or null, got {value!r}"
                    )
                number = float(value) if -_FLOAT_MAX_INT <= value <= _FLOAT_MAX_INT else math.inf
                if not math.isfinite(number):
                    raise RequestRejected(
                        422, _where(name, i, n), "finite", "NaN and infinities are not values; send null for missing"
                    )
                values[i] = number
            elif isinstance(value, str):
                values[i] = value
            else:
                raise RequestRejected(
                    422, _where(name, i, n), "categorical_type", f"expected a string or null, got {value!r}"
                )
        columns[name] = values
    return columns


def _fast_inputs(columns: dict[str, np.ndarray[Any, Any]], served: Served) -> dict[str, np.ndarray[Any, Any]] | None:
    """The ONNX inputs when every value passes every schema rule, else None (then the full check names the fault).

    Applies the rules of :func:`ferry.data.validate` to JSON-typed columns without pandas: missing values, the
    declared range, declared levels; blank strings count as missing. ``tests/test_online.py`` checks that it gives
    the same arrays as ``validate`` + ``to_onnx_inputs`` and refuses whatever those refuse.
    """
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    for feature in served.schema.features:
        values = columns[feature.name]
        if feature.type == "numeric":
            missing = np.isnan(values)
            if not feature.nullable and missing.any():
                return None
            present = values[~missing]
            if (feature.min is not None and (present < feature.min).any()) or (
                feature.max is not None and (present > feature.max).any()
            ):
                return None
            inputs[feature.name] = values.astype(np.float32).reshape(-1, 1)
        else:
            text = np.empty(len(values), dtype=object)
            known = served.levels.get(feature.name)
            limit = served.schema.text_limit(feature.name)
            for i, value in enumerate(values):
                if value is None or not value.strip():
                    if not feature.nullable:
                        return None
                    text[i] = ""
                elif (known is not None and value not in known) or len(value) > limit:
                    return None
                else:
                    text[i] = value
            inputs[feature.name] = text.reshape(-1, 1)
    return inputs


_ABSENT = object()
_FLOAT_MAX_INT = int(np.finfo(np.float64).max)  # a JSON integer beyond this has no float value

SMALL = 8
"""Requests of up to this many records are checked value by value in Python (:func:`_small_inputs`): for a few
records that is several times cheaper than the per-call overhead of the numpy reductions in :func:`_fast_inputs`."""


def _small_inputs(records: Sequence[Mapping[str, Any]], served: Served) -> dict[str, np.ndarray[Any, Any]] | None:
    """The ONNX inputs when every record is well-typed and passes every rule, else None (then the full check runs).

    The same rules as :func:`_columns` + :func:`_fast_inputs`, value by value; ``tests/test_online.py`` checks
    that all three paths agree on every record. The values are gathered into one array per type (numbers, texts),
    and each feature's input is a view of its rows: two numpy calls per request instead of one per feature.
    """
    allowed = served.allowed
    id_name, id_limit = served.schema.id, served.schema.max_text_length
    for record in records:
        for key in record:
            if key not in allowed:
                return None
        value = record.get(id_name) if id_name is not None else None
        if _id_too_long(value, id_limit):
            return None
    numbers: list[float] = []
    texts: list[str] = []
    for name, numeric, nullable, low, high, levels, max_length in served.rules:
        for record in records:
            value = record.get(name, _ABSENT)
            if value is None:
                if not nullable:
                    return None
                if numeric:
                    numbers.append(math.nan)
                else:
                    texts.append("")
            elif numeric:
                kind = type(value)
                if kind is int:
                    if not -_FLOAT_MAX_INT <= value <= _FLOAT_MAX_INT:
                        return None
                    value = float(value)
                elif kind is not float:
                    return None  # bool, str, list, ... (the full check names the field)
                if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
                    return None
                numbers.append(value)
            elif type(value) is not str:
                return None  # _ABSENT, a number, a list ...
            elif not value.strip():
                if not nullable:
                    return None
                texts.append("")
            elif (levels is not None and value not in levels) or len(value) > max_length:
                return None
            else:
                texts.append(value)
    n = len(records)
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    if served.numeric_names:
        block = np.array(numbers, dtype=np.float32).reshape(len(served.numeric_names), n, 1)
        for i, name in enumerate(served.numeric_names):
            inputs[name] = block[i]
    if served.text_names:
        flat = np.empty(len(texts), dtype=object)
        flat[:] = texts
        block = flat.reshape(len(served.text_names), n, 1)
        for i, name in enumerate(served.text_names):
            inputs[name] = block[i]
    return inputs


def prepare(records: Sequence[Mapping[str, Any]], served: Served) -> dict[str, np.ndarray[Any, Any]]:
    """The input dict of ``model.onnx`` for these records, or RequestRejected (422) naming the first bad field."""
    if len(records) <= SMALL:
        small = _small_inputs(records, served)
        if small is not None:
            return small
    columns = _columns(records, served)
    fast = _fast_inputs(columns, served)
    if fast is not None:
        return fast
    return slow_inputs(columns, served, len(records))


def slow_inputs(columns: dict[str, np.ndarray[Any, Any]], served: Served, n: int) -> dict[str, np.ndarray[Any, Any]]:
    """The same through :func:`ferry.data.validate` and :func:`ferry.data.to_onnx_inputs` (the batch path)."""
    try:
        checked = validate(pd.DataFrame(columns), served.features, require_target=False)
    except DataValidationError as exc:
        shown = f"; e.g. {', '.join(exc.examples)}" if exc.examples and n > 1 else ""
        raise RequestRejected(422, exc.column, exc.rule, exc.detail + shown) from None
    return to_onnx_inputs(checked, served.features)
