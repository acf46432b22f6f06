"""Explanations in batch scoring (``ferry score --explain``): a run's explain options and the columns they add.

A run with ``--explain`` adds, after the usual output columns, the columns of :func:`ferry.explain.batch_columns`
for each good row: ``explained_class`` (classifiers), ``explained_value``, ``base_value``, ``attribution_<feature>``
per feature and ``top_1`` .. ``top_k``. They come from the version's own explainer (:func:`ferry.explain.
load_explainer`: its ``model.onnx`` with the plan and background of its ``explain.npz``), on the same ONNX inputs
the row was scored with, so a row gets the numbers every other surface gives it.

:class:`ExplainOptions` is what a run records in each partition's manifest record, so that a rerun with other
options is refused rather than mixing partitions with and without explanations (or with another top-k or class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ferry.batch.model import load_batch_explainer
from ferry.errors import ConfigError
from ferry.explain import ATTRIBUTION_PREFIX, TOP_PREFIX, Explainer, ExplainSettings, batch_columns
from ferry.registry import ModelVersion, Registry
from ferry.schema import Schema

__all__ = [
    "ExplainOptions",
    "Explaining",
    "check_recorded",
    "describe_options",
    "explain_columns",
    "explain_fields",
    "explain_options",
    "run_options",
    "same_options",
]


@dataclass(frozen=True)
class ExplainOptions:
    """How a run explains its rows: the ``top_k`` features named per row, and the class explained (``target``;
    None: the class predicted for each row, or a regressor's value). Plain data, so it travels to other processes."""

    top_k: int
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"top_k": self.top_k, "class": self.target}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> ExplainOptions | None:
        if raw is None:
            return None
        target = raw.get("class")
        return cls(top_k=int(raw["top_k"]), target=None if target is None else str(target))


def explain_options(
    schema: Schema,
    *,
    top_k: int | None = None,
    target: str | None = None,
    settings: ExplainSettings | None = None,
) -> ExplainOptions:
    """The options of a run that explains with a model of ``schema``, checked before anything runs.

    ``top_k`` defaults to ``FERRY_EXPLAIN_TOP_K`` capped at the feature count; one outside 1 .. the feature count,
    or a class the model does not have (or any class for a regressor), is a :class:`ConfigError` naming the option.
    """
    d = len(schema.feature_names)
    if top_k is None:
        k = min((settings or ExplainSettings()).top_k, d)
    elif isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= d:
        raise ConfigError(
            f"--top-k (top_k) must be a whole number from 1 to {d}, the features of model {schema.name!r}, "
            f"got {top_k!r}"
        )
    else:
        k = top_k
    if target is not None:
        if schema.kind == "regression":
            raise ConfigError(
                f"--explain-class (explain_class) {target!r} cannot be asked of model {schema.name!r}: a regressor "
                "explains its value; leave it out"
            )
        classes = [str(c) for c in schema.target_classes]
        if str(target) not in classes:
            raise ConfigError(
                f"--explain-class (explain_class) {target!r} is not one of the classes of model {schema.name!r}: "
                f"{', '.join(classes)}"
            )
    return ExplainOptions(top_k=k, target=None if target is None else str(target))


def same_options(recorded: dict[str, Any] | None, options: ExplainOptions | None) -> bool:
    """Whether a manifest record's explain options (None: written without explanations) are ``options``."""
    return ExplainOptions.from_dict(recorded) == options


def run_options(
    registry: Registry,
    version: ModelVersion,
    *,
    explain: bool,
    top_k: int | None = None,
    explain_class: str | None = None,
) -> ExplainOptions | None:
    """A run's explain options, checked, with the version's explainer loaded, so that a bad option or a missing
    ``explain.npz`` (:class:`ferry.errors.BackgroundMissing`) is said before anything runs; None without
    ``explain``."""
    if not explain:
        if top_k is not None or explain_class is not None:
            raise ConfigError("--top-k (top_k) and --explain-class (explain_class) apply only with --explain")
        return None
    options = explain_options(registry.schema(version), top_k=top_k, target=explain_class)
    load_batch_explainer(registry.url, version.model, version.id)
    return options


def describe_options(options: ExplainOptions | dict[str, Any] | None) -> str:
    """The options (or their :meth:`ExplainOptions.to_dict`) in words, for messages and summaries."""
    if isinstance(options, dict):
        options = ExplainOptions.from_dict(options)
    if options is None:
        return "without explanations"
    target = "the predicted class" if options.target is None else f"class {options.target!r}"
    return f"with explanations (top {options.top_k}, {target})"


def check_recorded(output: str, records: dict[str, dict[str, Any]], options: ExplainOptions | None) -> None:
    """Refuse (ConfigError) to add to ``output`` when its manifest ``records`` were written with other explain
    options, so that one output never mixes partitions with and without explanations, or with other ones."""
    other = sorted(k for k, r in records.items() if not same_options(r.get("explain"), options))
    if other:
        had = ExplainOptions.from_dict(records[other[0]].get("explain"))
        shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
        raise ConfigError(
            f"output {output} already holds partitions ({shown}) scored {describe_options(had)}, and this run asks "
            f"{describe_options(options)}; run it as it was run before, or write to a new output"
        )


def _class_type(schema: Schema) -> pa.DataType:
    classes = schema.target_classes
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return pa.int64()
    return pa.string()


def explain_fields(schema: Schema, options: ExplainOptions) -> list[pa.Field]:
    """The output columns an explained run adds, in :func:`ferry.explain.batch_columns` order."""
    fields = [] if schema.kind == "regression" else [pa.field("explained_class", _class_type(schema))]
    fields += [pa.field("explained_value", pa.float64()), pa.field("base_value", pa.float64())]
    fields += [pa.field(ATTRIBUTION_PREFIX + name, pa.float64()) for name in schema.feature_names]
    fields += [pa.field(f"{TOP_PREFIX}{r + 1}", pa.string()) for r in range(options.top_k)]
    return fields


def explain_columns(
    explainer: Explainer, inputs: dict[str, np.ndarray], schema: Schema, options: ExplainOptions
) -> list[pa.Array]:
    """The explanation columns of the rows of ``inputs`` (the ONNX inputs they were scored with), as Arrow arrays
    typed as :func:`explain_fields` says; the numbers are the explainer's float64, unchanged."""
    found = explainer.explain(inputs, target=options.target, top_k=options.top_k)
    columns = batch_columns(found, classifier=schema.kind != "regression")
    fields = explain_fields(schema, options)
    return [pa.array(columns[f.name], type=f.type) for f in fields]


@dataclass(frozen=True)
class Explaining:
    """What scoring a partition needs to explain its rows: the version's explainer and the run's options."""

    explainer: Explainer
    options: ExplainOptions

    def fields(self, schema: Schema) -> list[pa.Field]:
        return explain_fields(schema, self.options)

    def columns(self, inputs: dict[str, np.ndarray], schema: Schema) -> list[pa.Array]:
        return explain_columns(self.explainer, inputs, schema, self.options)
