"""The declared input schema of a model: which columns exist, what they hold, and which ones must never be used.

A schema is written by a person as YAML (or JSON) and loaded into frozen pydantic models, so every later step —
validation, training, ONNX export, scoring, drift checks — reads the same typed description::

    name: churn                 # model name: ^[a-z0-9][a-z0-9_-]{0,63}$
    task: binary                # binary | multiclass | regression; optional (see below)
    target: churned             # the target column
    target_classes: [0, 1]      # binary: (negative, positive); multiclass: every level; regression: none
    id: customer_id             # optional row id column
    timestamp: signup_at        # optional; used for the time-based split
    pii: [email, phone]         # never logged, never used as features
    data: s3://lake/churn/{start:%Y-%m-%d}/   # optional: where a drift-triggered retrain reads (see below)
    features:
      - {name: tenure_months, type: numeric, min: 0, max: 600, direction: decreasing}
      - {name: plan, type: categorical, levels: [basic, standard, premium], allow_unknown: false}

The task is explicit (``task:``) or follows from what is declared: two ``target_classes`` make a binary model, three
or more a multiclass one, ``target_min``/``target_max`` a regressor. A schema that declares none of these leaves the
task to be inferred from the data at ingest (:func:`ferry.target.infer`), which says what it chose in one line.
A multiclass schema may leave its ``target_classes`` out: the levels are then discovered from the data. A regressor
has a numeric target with optional ``target_min``/``target_max``. A feature's ``direction`` is its monotone effect
on the positive class (binary), on the probability of ``direction_class`` (multiclass; required there) or on the
value (regression).

``data`` is the model's data source for retraining, a path or fsspec URL that may name the drift event's time
window: ``{start}`` and ``{end}`` (datetimes in UTC, with an optional ``strftime`` format after a colon, e.g.
``{start:%Y%m%d}``) and ``{model}``; :meth:`Schema.data_url` fills it in. It is checked when the schema is loaded:
any other placeholder, or a template that does not format, is refused naming the field.

A broken schema file raises :class:`~ferry.errors.SchemaError` whose message names each offending field by its
path (``features[2].type: must be 'numeric' or 'categorical', got 'int'``), so the file can be fixed in one go.

One concept kept whole (about 580 lines): the fields of a schema and the rules that bind them to each other (task,
target, classes, features, directions) are checked together and read best side by side.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from ferry.errors import SchemaError

__all__ = ["TASKS", "Feature", "Schema", "Task", "fill_data_template"]

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DEFAULT_MAX_TEXT = 256
"""Longest text a categorical value or an id may hold unless the schema says otherwise (free text is not stored
at any length)."""
"""Allowed model names: they end up in registry paths, channel names and Bento tags."""

DATA_FIELDS = ("model", "start", "end")
"""The placeholders a schema's ``data`` template may name."""


def _fill(template: str, model: str, start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        if names & {"start", "end"}:
            raise ValueError("the template names the time window, and none was given")
    return template.format(model=model, start=start, end=end)


_RULE = "ferry_schema_rule"
"""Error type of our own cross-field checks; its context carries the sub-path of the offending field."""


def _rule_error(field: str, reason: str) -> PydanticCustomError:
    """A validation error about ``field`` (a path relative to the model being validated)."""
    return PydanticCustomError(_RULE, "{field}: {reason}", {"field": field, "reason": reason})


def _coerce_label(value: Any, what: str) -> Any:
    """Accept numbers where a label string or class is expected, but refuse YAML's surprise booleans.

    YAML 1.1 reads unquoted ``yes``/``no``/``on``/``off`` as booleans; silently comparing those with data labels
    would never match, so the user is told to quote them.
    """
    if isinstance(value, bool):
        raise _rule_error(
            what, f"got the boolean {str(value).lower()}; quote it in YAML (e.g. 'yes', 'no') so it stays a label"
        )
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Feature(_Frozen):
    """One input column the model is allowed to use, with the rules its values must follow."""

    name: str = Field(min_length=1, description="Column name in the data.")
    type: Literal["numeric", "categorical"] = Field(description="How the column is encoded for the model.")
    nullable: bool = Field(default=True, description="Whether missing values are allowed.")
    levels: tuple[str, ...] | None = Field(
        default=None, description="Known categories of a categorical feature; None means any string."
    )
    allow_unknown: bool = Field(
        default=True, description="Whether categories outside ``levels`` are allowed (they are encoded as unknown)."
    )
    min: float | None = Field(default=None, description="Smallest allowed value of a numeric feature.")
    max: float | None = Field(default=None, description="Largest allowed value of a numeric feature.")
    direction: Literal["increasing", "decreasing"] | None = Field(
        default=None,
        description="Expected monotone effect of a numeric feature on the positive class, the value (regression) "
        "or the probability of direction_class (multiclass).",
    )
    direction_class: int | str | None = Field(
        default=None, description="The class whose probability ``direction`` is about (multiclass; binary: positive)."
    )
    max_length: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Longest text a value of a categorical feature may hold; default: the schema's max_text_length.",
    )
    description: str | None = Field(default=None, description="What the column means, for people.")

    @field_validator("levels", mode="before")
    @classmethod
    def _levels_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            out: list[Any] = []
            for i, level in enumerate(value):
                level = _coerce_label(level, f"[{i}]")
                out.append(str(level) if isinstance(level, int | float) else level)
            return out
        return value

    @field_validator("direction_class", mode="before")
    @classmethod
    def _no_boolean_direction_class(cls, value: Any) -> Any:
        return _coerce_label(value, "")

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        if self.direction_class is not None and self.direction is None:
            raise _rule_error("direction_class", "is set but direction is not; add direction or remove it")
        if self.type == "numeric":
            if self.levels is not None:
                raise _rule_error("levels", "only categorical features have levels; remove it or set type categorical")
            if self.max_length is not None:
                raise _rule_error("max_length", "only categorical features hold text; remove it")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise _rule_error("min", f"min ({self.min:g}) is greater than max ({self.max:g})")
        else:
            if self.direction is not None:
                raise _rule_error("direction", "only numeric features have a direction; remove it")
            if self.max_length is not None and self.levels is not None:
                longest = max(len(level) for level in self.levels)
                if longest > self.max_length:
                    raise _rule_error(
                        "max_length", f"is {self.max_length}, but a declared level has {longest} characters"
                    )
            for bound in ("min", "max"):
                if getattr(self, bound) is not None:
                    raise _rule_error(bound, f"only numeric features have {bound}; remove it")
            if self.levels is not None:
                if not self.levels:
                    raise _rule_error("levels", "is empty; list the known categories or remove the key")
                seen: set[str] = set()
                for i, level in enumerate(self.levels):
                    if level in seen:
                        raise _rule_error(f"levels[{i}]", f"duplicate level {level!r}")
                    seen.add(level)
            elif not self.allow_unknown:
                raise _rule_error(
                    "allow_unknown", "is false but no levels are listed, so no value would pass; list the levels"
                )
        return self


class Schema(_Frozen):
    """The declared input schema of one model. Load it with :meth:`Schema.load`."""

    name: str = Field(pattern=NAME_PATTERN, description="Model name (lower case, digits, '_' and '-').")
    target: str = Field(min_length=1, description="The target column.")
    task: Task | None = Field(
        default=None,
        description="binary, multiclass or regression; None: follows from target_classes/target_min/target_max, "
        "or is inferred from the data at ingest.",
    )
    target_classes: tuple[int | str, ...] = Field(
        default=(0, 1),
        description="binary: the two labels, the second one positive; multiclass: every level (empty: discovered "
        "from the data); regression: empty.",
    )
    target_min: float | None = Field(default=None, description="Smallest allowed target value (regression).")
    target_max: float | None = Field(default=None, description="Largest allowed target value (regression).")
    id: str | None = Field(default=None, min_length=1, description="Optional row id column.")
    timestamp: str | None = Field(
        default=None, min_length=1, description="Optional event time column, used for the time-based split."
    )
    pii: tuple[str, ...] = Field(default=(), description="Columns that must never be logged or used as features.")
    features: tuple[Feature, ...] = Field(min_length=1, description="The columns the model may use, in order.")
    max_text_length: int = Field(
        default=DEFAULT_MAX_TEXT,
        ge=1,
        le=1_000_000,
        description="Longest text of the id and of a categorical value, unless the feature sets max_length.",
    )
    intended_use: str | None = Field(
        default=None, max_length=4000, description="What the model is for and for whom (shown on its model card)."
    )
    data: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="The data a drift-triggered retrain reads: a path or URL, with {start}, {end} (the event's time "
        "window, optionally {start:%Y%m%d}) and {model} filled in.",
    )
    limitations: tuple[str, ...] = Field(
        default=(), description="Known limits a user of the model should read (shown on its model card)."
    )

    @field_validator("data")
    @classmethod
    def _data_template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise _rule_error("", f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from exc
        unknown = sorted(names - set(DATA_FIELDS))
        if unknown:
            raise _rule_error(
                "", f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; use {', '.join(DATA_FIELDS)}"
            )
        try:
            _fill(value, "model", datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 2, tzinfo=UTC))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise _rule_error("", f"does not format ({exc}); e.g. {{start:%Y-%m-%d}}") from exc
        return value

    @model_validator(mode="before")
    @classmethod
    def _task_from_declarations(cls, data: Any) -> Any:
        """Fill ``task`` from what is declared, and leave out the binary default where it does not apply."""
        if not isinstance(data, Mapping):
            return data
        doc = dict(data)
        classes = doc.get("target_classes")
        declared = isinstance(classes, list | tuple)
        many = declared and len(classes or ()) > 2
        bounded = doc.get("target_min") is not None or doc.get("target_max") is not None
        if doc.get("task") is None:
            if many and not bounded:
                doc["task"] = "multiclass"
            elif declared and not bounded:
                doc["task"] = "binary"
            elif bounded and not declared:
                doc["task"] = "regression"
        if doc.get("task") in ("multiclass", "regression") and "target_classes" not in doc:
            doc["target_classes"] = []
        return doc

    @field_validator("target_classes", mode="before")
    @classmethod
    def _no_boolean_classes(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [_coerce_label(v, f"[{i}]") for i, v in enumerate(value)]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Schema:
        self._check_target()
        # Every declared column has one role; the first claim of a name wins and later ones are reported.
        roles: dict[str, str] = {"target": self.target}
        if self.id is not None:
            roles["id"] = self.id
        if self.timestamp is not None:
            roles["timestamp"] = self.timestamp
        owner: dict[str, str] = {}
        for role, column in roles.items():
            if column in owner:
                raise _rule_error(role, f"column {column!r} is already used as {owner[column]}")
            owner[column] = role
        for i, feature in enumerate(self.features):
            path = f"features[{i}].name"
            if feature.name == self.target:
                raise _rule_error(path, f"the target column {feature.name!r} cannot be a feature")
            if feature.name in owner:
                raise _rule_error(path, f"column {feature.name!r} is already used as {owner[feature.name]}")
            owner[feature.name] = path
        seen_pii: set[str] = set()
        for i, column in enumerate(self.pii):
            path = f"pii[{i}]"
            if column in seen_pii:
                raise _rule_error(path, f"duplicate PII column {column!r}")
            seen_pii.add(column)
            if column in owner:
                raise _rule_error(
                    path, f"PII column {column!r} is also used as {owner[column]}; PII must never reach the model"
                )
        return self

    def _check_target(self) -> None:
        """The target's declarations agree with the task (binary keeps its rules and messages unchanged)."""
        classes = self.target_classes
        if self.task == "regression":
            if classes:
                raise _rule_error("target_classes", "a regression target has no classes; remove target_classes")
            if self.target_min is not None and self.target_max is not None and self.target_min > self.target_max:
                raise _rule_error(
                    "target_min", f"target_min ({self.target_min:g}) is greater than target_max ({self.target_max:g})"
                )
        else:
            for bound in ("target_min", "target_max"):
                if getattr(self, bound) is not None:
                    raise _rule_error(bound, "only a regression target has bounds; remove it or set task: regression")
        if self.task in (None, "binary"):
            if len(classes) != 2:
                raise _rule_error(
                    "target_classes",
                    f"must list exactly two classes (negative, positive), got {len(classes)}; "
                    "for more classes set task: multiclass",
                )
            if str(classes[0]) == str(classes[1]):
                raise _rule_error("target_classes", f"the two classes must differ, got {classes[0]!r} twice")
        if self.task == "multiclass":
            if len(classes) in (1, 2):
                raise _rule_error(
                    "target_classes",
                    f"a multiclass target needs at least three classes, got {len(classes)}; with two use task: binary",
                )
            seen: dict[str, int] = {}
            for i, label in enumerate(classes):
                if str(label) in seen:
                    raise _rule_error(f"target_classes[{i}]", f"duplicate class {label!r}")
                seen[str(label)] = i
        known = {str(c) for c in classes} if self.task is not None else set()  # else: known once inferred
        for i, feature in enumerate(self.features):
            if feature.direction is None:
                continue
            where = f"features[{i}].direction_class"
            if self.task == "regression" and feature.direction_class is not None:
                raise _rule_error(where, "a regression direction is about the value; remove direction_class")
            if self.task == "multiclass" and feature.direction_class is None:
                raise _rule_error(where, "a multiclass direction must name the class whose probability it moves")
            if feature.direction_class is not None and known and str(feature.direction_class) not in known:
                raise _rule_error(where, f"{feature.direction_class!r} is not one of target_classes")

    # ------------------------------------------------------------------ views

    @property
    def kind(self) -> Task:
        """The task this schema describes (binary until the data says otherwise, when it was left to inference)."""
        return self.task or "binary"

    @property
    def infers_task(self) -> bool:
        """Whether the task (or a multiclass schema's classes) is left to be inferred from the data at ingest."""
        if self.task is None:
            return "target_classes" not in self.model_fields_set
        return self.task == "multiclass" and not self.target_classes

    @property
    def is_classifier(self) -> bool:
        return self.kind != "regression"

    def class_index(self, label: int | str) -> int:
        """Position of a class label in ``target_classes`` (labels compare as text)."""
        for i, c in enumerate(self.target_classes):
            if str(c) == str(label):
                return i
        raise KeyError(f"{label!r} is not one of the classes of {self.target!r}")

    def resolved(self, task: Task, classes: tuple[int | str, ...] = ()) -> Schema:
        """This schema with its task (and, for a classifier, its classes) settled, validated again."""
        doc = self.to_dict()
        doc["task"] = task
        doc["target_classes"] = list(classes)
        return Schema.from_dict(doc, source=f"schema {self.name}")

    def text_limit(self, name: str) -> int:
        """The longest text column ``name`` (a categorical feature or the id) may hold."""
        for feature in self.features:
            if feature.name == name and feature.max_length is not None:
                return feature.max_length
        return self.max_text_length

    @property
    def feature_names(self) -> tuple[str, ...]:
        """All feature columns, in declared order (the model's input order)."""
        return tuple(f.name for f in self.features)

    @property
    def numeric_features(self) -> tuple[str, ...]:
        """Names of the numeric features, in declared order."""
        return tuple(f.name for f in self.features if f.type == "numeric")

    @property
    def categorical_features(self) -> tuple[str, ...]:
        """Names of the categorical features, in declared order."""
        return tuple(f.name for f in self.features if f.type == "categorical")

    @property
    def positive_class(self) -> int | str:
        """The label that validation maps to 1 (the second of ``target_classes``)."""
        return self.target_classes[1]

    def feature(self, name: str) -> Feature:
        """The feature called ``name``; KeyError if the schema has none."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"schema {self.name!r} has no feature {name!r}; features are {', '.join(self.feature_names)}")

    # ------------------------------------------------------------------ (de)serialisation

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "schema document") -> Schema:
        """Validate a parsed schema document; SchemaError lists every problem by its field path."""
        if not isinstance(data, Mapping):
            raise SchemaError(
                f"{source}: the schema must be a mapping with keys such as name, target and features, "
                f"got {type(data).__name__}"
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            problems = [_describe(err) for err in exc.errors()]
            raise SchemaError(
                f"{source}: invalid schema ({len(problems)} problem{'s' if len(problems) > 1 else ''}), "
                "fix and retry: " + "; ".join(problems)
            ) from None

    @classmethod
    def load(cls, path_or_url: str | Path, *, storage_options: Mapping[str, Any] | None = None) -> Schema:
        """Read a schema file (``.yaml``/``.yml`` or ``.json``) from a local path or any fsspec URL."""
        import fsspec

        source = str(path_or_url)
        suffix = _suffix(source)
        if suffix not in {".yaml", ".yml", ".json"}:
            raise SchemaError(f"{source}: unknown schema file type {suffix or '(none)'!r}; use .yaml, .yml or .json")
        try:
            with fsspec.open(source, "rb", **dict(storage_options or {})) as fh:
                raw: bytes = fh.read()
        except FileNotFoundError:
            raise SchemaError(f"{source}: schema file not found; check the path or URL") from None
        except IsADirectoryError:
            raise SchemaError(f"{source}: is a directory; pass the schema file itself") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError(
                f"{source}: is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
            ) from None
        try:
            data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            kind = "JSON" if suffix == ".json" else "YAML"
            raise SchemaError(f"{source}: is not valid {kind}: {exc}") from None
        if data is None:
            raise SchemaError(f"{source}: the schema file is empty; declare at least name, target and features")
        return cls.from_dict(data, source=source)

    def data_url(self, start: datetime | None, end: datetime | None) -> str | None:
        """The ``data`` template filled in for the window ``start``..``end`` (None: the template's own text is kept
        only when it names no time), or None when the schema names no data. SchemaError when the template needs a
        time that was not given."""
        return None if self.data is None else fill_data_template(self.data, self.name, start, end)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-compatible dict of the schema (tuples become lists, None values are kept, except an unset
        ``data``: left out, so that the schemas written before it existed keep their bytes and version ids)."""
        out = self.model_dump(mode="json")
        if out["data"] is None:
            del out["data"]
        return out

    def dump_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, every field present. Equal schemas give equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def dump_yaml(self) -> str:
        """Readable YAML in declared field order, leaving out fields that are None. :meth:`load` reads it back."""
        doc = _tidy(self.model_dump(mode="json", exclude_none=True))
        for feature in doc["features"]:
            if feature["type"] == "numeric":
                feature.pop("allow_unknown")  # only means something for categories
        return str(yaml.dump(doc, Dumper=_YamlDumper, sort_keys=False, allow_unicode=True, width=120))


class _YamlDumper(yaml.SafeDumper):
    """Safe YAML with short lists of scalars on one line (``levels: [basic, standard, premium]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(item, str | int | float) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_YamlDumper.add_representer(list, _represent_list)


def _tidy(value: Any) -> Any:
    """Whole floats as ints (``min: 0``, not ``min: 0.0``); they load back as the same float."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def _suffix(source: str) -> str:
    """Lower-case suffix of a path or URL, ignoring any query string."""
    path = urlsplit(source).path if "://" in source else source
    return Path(path).suffix.lower()


_TOP_KEYS = tuple(Schema.model_fields)
_FEATURE_KEYS = tuple(Feature.model_fields)


def _path(loc: tuple[int | str, ...]) -> str:
    """``('features', 2, 'type')`` -> ``features[2].type``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _describe(err: ErrorDetails) -> str:
    """One pydantic error as ``path: reason`` in words a schema author can act on."""
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    kind = err["type"]
    value = err.get("input")
    if kind == _RULE:
        field = str(ctx.get("field", ""))
        base = _path(loc)
        path = f"{base}{'' if not field or field.startswith('[') else '.'}{field}" if base else field
        reason = err["msg"].split(": ", 1)[1] if ": " in err["msg"] else err["msg"]
        return f"{path}: {reason}"
    path = _path(loc) or "(top level)"
    if kind == "extra_forbidden":
        allowed = _FEATURE_KEYS if len(loc) >= 2 and loc[0] == "features" else _TOP_KEYS
        return f"{path}: unknown key; allowed keys are {', '.join(allowed)}"
    if kind == "missing":
        return f"{path}: is required but missing"
    if kind == "literal_error":
        return f"{path}: must be {ctx.get('expected')}, got {value!r}"
    if kind == "string_pattern_mismatch" and loc == ("name",):
        return (
            f"{path}: {value!r} is not a valid model name; use 1-64 lower-case letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    if kind == "too_short" and loc == ("features",):
        return f"{path}: at least one feature is required"
    if kind == "string_too_short":
        return f"{path}: must not be empty"
    message = re.sub(r"^(Input|Value error, )\s*", "", err["msg"]).rstrip(".").replace("valid tuple", "list")
    return f"{path}: {message[:1].lower()}{message[1:]}, got {value!r}"


def fill_data_template(
    template: str, model: str, start: datetime | None, end: datetime | None, *, source: str = "data"
) -> str:
    """A ``data`` template (checked as the schema's ``data`` field is) filled in for ``model`` and the window
    ``start``..``end``; SchemaError naming ``source`` when it is not a valid template or needs a time not given.
    Used for a template that does not come from a schema file too (a retrain deployment's ``data_sources``)."""
    try:
        Schema._data_template(template)
    except PydanticCustomError as exc:
        raise SchemaError(f"{source}: {template!r}: {str(exc).removeprefix(': ')}") from None
    try:
        return _fill(template, model, start, end)
    except (ValueError, TypeError, AttributeError) as exc:
        raise SchemaError(
            f"{source}: {template!r} of model {model!r} needs the drift event's time window (start and end): "
            f"{exc}; pass the data or the window"
        ) from exc
