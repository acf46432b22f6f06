"""The data and schema a retrain reads, when it is asked for a model rather than given files.

A drift-triggered retrain (the automation in ``prefect.yaml``) names the event's model and time window. Its data
source is, first found:

1. ``data``, given to the run (the deployment's parameters, or a run by hand);
2. ``data_sources[model]``, a map from model to data URL in the retrain deployment's parameters;
3. the ``data`` template of the model's schema (:attr:`ferry.schema.Schema.data`), as registered with its champion.

Each may name the window (``{start}``, ``{end}``, e.g. ``{start:%Y-%m-%d}``) and ``{model}``; they are filled in
here. The schema is ``schema_file`` when given, else the one registered with the model's champion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ferry.errors import ConfigError, SchemaError
from ferry.registry.store import Registry
from ferry.schema import Schema, fill_data_template

__all__ = ["Source", "resolve_source"]


@dataclass(frozen=True)
class Source:
    """What a retrain reads: the data URL (window filled in), the schema file, and where the data URL came from."""

    data: str
    schema_file: str
    model: str
    came_from: str


def _when(value: str | None, name: str) -> datetime | None:
    if value is None or not str(value).strip():
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{name} {value!r} is not an ISO 8601 time, e.g. 2027-01-31T12:00:00+00:00") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def resolve_source(
    registry: Registry,
    run_dir: Path,
    *,
    data: str | None = None,
    schema_file: str | None = None,
    model: str | None = None,
    data_sources: Mapping[str, str] | None = None,
    window_start: str | None = None,
    window_end: str | None = None,
    champion_channel: str = "online/champion",
) -> Source:
    """The data URL and schema file of a retrain; ConfigError naming what is missing or does not agree."""
    start, end = _when(window_start, "window_start"), _when(window_end, "window_end")
    if start and end and end < start:
        raise ConfigError(f"window_end {window_end!r} is before window_start {window_start!r}")
    if schema_file:
        schema = Schema.load(schema_file)
        if model and schema.name != model:
            raise ConfigError(f"schema_file {schema_file!r} is the schema of {schema.name!r}, not of model {model!r}")
    elif model:
        vid = registry.channel(model, champion_channel)
        if vid is None:
            raise ConfigError(
                f"model {model!r} has no version on {champion_channel!r} to take its schema from; pass schema_file"
            )
        schema = registry.schema(registry.get(vid, model=model))
        run_dir.mkdir(parents=True, exist_ok=True)
        schema_file = str(run_dir / "source-schema.json")
        Path(schema_file).write_text(schema.dump_json())
    else:
        raise ConfigError("name the model to retrain (model) or its schema (schema_file)")
    sources = dict(data_sources or {})
    if data:
        template, came_from = data, "data"
    elif schema.name in sources:
        template, came_from = sources[schema.name], f"data_sources[{schema.name!r}]"
    elif schema.data:
        template, came_from = schema.data, f"the data template of the schema of {schema.name!r}"
    else:
        raise ConfigError(
            f"no data source for model {schema.name!r}: set `data` in its schema (a URL template with the event's "
            f"{{start}} and {{end}}), or data_sources.{schema.name} in the retrain deployment's parameters, or give "
            f"data"
        )
    try:
        filled = fill_data_template(template, schema.name, start, end, source=came_from)
    except SchemaError as exc:
        raise ConfigError(str(exc)) from exc
    return Source(filled, schema_file, schema.name, came_from)
