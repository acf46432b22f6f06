"""Model cards: what a version is for, what it was trained on, how it did against the champion, what the gate and
the behaviour tests said, which features matter (its global importance table, with rank moves against the
champion), what it cannot do, and where it came from, built from the evidence the version carries.

The retrain loop writes ``model_card.json`` and ``model_card.md`` into every version it registers (:func:`write`);
``ferry models card VERSION`` prints it, building it from the same files for versions registered before cards
existed (:func:`build` reads through a function, so a run directory and a registered version are read alike).
Nothing here judges: every line comes from a file of the version or from the schema a person wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ferry.explain.importance import IMPORTANCE_FILE, Importance, table_rows

__all__ = ["CARD_FORMAT", "CARD_JSON", "CARD_MD", "build", "render", "write"]

CARD_FORMAT = 1
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"

Reader = Callable[[str], bytes | None]


def _json(read: Reader, name: str) -> Any:
    data = read(name)
    return None if data is None else json.loads(data)


def build(read: Reader) -> dict[str, Any]:
    """The card of the version whose files ``read(name)`` returns (None for a file it does not have)."""
    schema = _json(read, "schema.json") or {}
    metrics = _json(read, "metrics.json") or {}
    champion_metrics = _json(read, "champion_metrics.json") or {}
    gate = _json(read, "gate.json") or {}
    lineage = _json(read, "lineage.json") or {}
    parity = _json(read, "parity.json") or {}
    importance = _json(read, IMPORTANCE_FILE)
    checks = list(gate.get("checks") or [])
    data = lineage.get("data") or {}
    return {
        "format": CARD_FORMAT,
        "model": schema.get("name"),
        "task": schema.get("task", "binary"),
        "intended_use": schema.get("intended_use"),
        "target": {
            "column": schema.get("target"),
            "classes": schema.get("target_classes"),
            "min": schema.get("target_min"),
            "max": schema.get("target_max"),
        },
        "features": [
            {k: f.get(k) for k in ("name", "type", "direction", "min", "max", "description") if f.get(k) is not None}
            for f in schema.get("features") or []
        ],
        "training_data": {
            "sha256": data.get("sha256"),
            "rows": data.get("rows"),
            "up_to": data.get("max_timestamp"),
            "split": lineage.get("split"),
        },
        "metrics": {
            name: {"candidate": value, "champion": champion_metrics.get(name)}
            for name, value in sorted(metrics.items())
            if isinstance(value, int | float)
        },
        "champion": gate.get("champion"),
        "gate": {
            "passed": gate.get("passed"),
            "decided_at": gate.get("decided_at"),
            "reasons": gate.get("reasons") or [],
            "error": gate.get("error"),
            "checks": len(checks),
            "failed": [c.get("name") for c in checks if c.get("passed") is False],
        },
        "behaviour": [
            {k: c.get(k) for k in ("name", "passed", "observed", "threshold")}
            for c in checks
            if str(c.get("name", "")).startswith("behaviour.")
        ],
        "parity": {k: parity.get(k) for k in ("max_abs_diff", "label_agreement", "rows") if k in parity},
        "importance": importance,
        "limits": _limits(schema, metrics, data, gate),
        "lineage": {
            "code_revision": lineage.get("code_revision"),
            "estimator": lineage.get("estimator"),
            "params": lineage.get("params"),
            "python": lineage.get("python"),
            "libraries": lineage.get("libraries"),
        },
    }


def _limits(
    schema: Mapping[str, Any], metrics: Mapping[str, Any], data: Mapping[str, Any], gate: Mapping[str, Any]
) -> list[str]:
    """Known limits: the ones the schema's author wrote, then what follows from the evidence."""
    limits = [str(x) for x in schema.get("limitations") or []]
    if data.get("max_timestamp"):
        limits.append(f"Trained on data up to {data['max_timestamp']}; it has seen nothing after that.")
    if isinstance(metrics.get("rows"), int | float):
        limits.append(f"The metrics come from {int(metrics['rows']):,} holdout rows.")
    for f in schema.get("features") or []:
        if f.get("type") == "numeric" and (f.get("min") is not None or f.get("max") is not None):
            low = "-inf" if f.get("min") is None else f"{f['min']:g}"
            high = "inf" if f.get("max") is None else f"{f['max']:g}"
            limits.append(f"`{f['name']}` outside [{low}, {high}] is refused, not scored.")
        elif f.get("type") == "categorical" and f.get("levels") and f.get("allow_unknown", True):
            limits.append(f"`{f['name']}` values outside its {len(f['levels'])} declared levels score as unseen.")
    if schema.get("pii"):
        limits.append(f"Never uses or logs {', '.join(f'`{c}`' for c in schema['pii'])} (declared personal data).")
    if gate.get("passed") is False:
        limits.append("The gate refused this version: it may not be promoted without --force (recorded).")
    return limits


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _target(target: Mapping[str, Any]) -> str:
    if target.get("classes"):
        return f"classes {', '.join(str(c) for c in target['classes'])}"
    if target.get("min") is not None or target.get("max") is not None:
        return f"values from {_value(target.get('min'))} to {_value(target.get('max'))}"
    return "values"


def _split(split: Any) -> str:
    if not isinstance(split, Mapping):
        return "-"
    how = {"time": "the latest rows by time", "stratified-random": "a stratified random share"}.get(
        str(split.get("method"))
    )
    return (
        f"{_value(split.get('train_rows'))} rows to train, {_value(split.get('holdout_rows'))} held out "
        f"({how or split.get('method')}" + (f", from {split['cutoff']}" if split.get("cutoff") else "") + ")"
    )


def _importance(table: Mapping[str, Any] | None) -> list[str]:
    """The global importance section: how the ranking was measured, then one row per feature."""
    if not table:
        return ["Not measured for this version (versions registered before importance tables carry none)."]
    found = Importance.from_dict(table)
    rows = table_rows(found)
    head = list(rows[0])
    better = "lower" if found.lower_is_better else "higher"
    lines = [
        f"Ranked by mean |attribution| over {found.rows} holdout rows ({'exact' if found.exact else 'sampled'} "
        f"Shapley values); loss: how much {found.metric} ({better} is better, {_value(found.baseline)} on "
        f"{found.holdout_rows} holdout rows) worsens when the feature is shuffled, mean ± sd of {found.repeats} "
        "repeats.",
    ]
    if found.champion is not None:
        lines.append(
            f"Ranks against the champion {found.champion}"
            + (f": not compared, {found.champion_note}." if found.champion_note else ".")
        )
    return [
        *lines,
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *["| " + " | ".join(r[k].replace("|", "\\|") for k in head) + " |" for r in rows],
    ]


def render(card: Mapping[str, Any], *, version: str | None = None) -> str:
    """The card as Markdown (the Prefect artifact, ``model_card.md`` and ``ferry models card``)."""
    title = f"# Model card: {card.get('model')}" + (f" {version}" if version else "")
    intended = card.get("intended_use") or "Not declared. Add `intended_use` to the schema."
    target = card.get("target") or {}
    data = card.get("training_data") or {}
    gate = card.get("gate") or {}
    lineage = card.get("lineage") or {}
    lines = [
        title,
        "",
        f"**Task:** {card.get('task')} on `{target.get('column')}` ({_target(target)})",
        "",
        "## Intended use",
        "",
        str(intended),
        "",
        "## Training data",
        "",
        f"- sha256 `{data.get('sha256')}`, {_value(data.get('rows'))} rows, up to {_value(data.get('up_to'))}",
        f"- split: {_split(data.get('split'))}",
        "- features: " + ", ".join(f"`{f['name']}`" for f in card.get("features") or []),
        "",
        "## Metrics on the holdout",
        "",
        f"| metric | this version | champion {card.get('champion') or '(none)'} |",
        "|---|---|---|",
        *[f"| {name} | {_value(m['candidate'])} | {_value(m['champion'])} |" for name, m in card["metrics"].items()],
        "",
        "## Gate",
        "",
        f"**{'passed' if gate.get('passed') else 'refused'}** at {gate.get('decided_at')}: {gate.get('checks')} checks"
        + (f", failed: {', '.join(gate['failed'])}" if gate.get("failed") else ""),
        *[f"- {r}" for r in gate.get("reasons") or []],
        *([f"- error: {gate['error']}"] if gate.get("error") else []),
        "",
        "## Behaviour tests",
        "",
        "| test | passed | observed | threshold |",
        "|---|---|---|---|",
        *[
            f"| {b['name']} | {_value(b['passed'])} | {_value(b['observed'])} | `{_value(b['threshold'])}` |"
            for b in card.get("behaviour") or []
        ],
        "",
        "## Global importance",
        "",
        *_importance(card.get("importance")),
        "",
        "## Known limits",
        "",
        *[f"- {limit}" for limit in card.get("limits") or []],
        "",
        "## Lineage",
        "",
        f"- code revision `{lineage.get('code_revision')}`, estimator {lineage.get('estimator')}, params "
        f"`{json.dumps(lineage.get('params'), sort_keys=True)}`",
        f"- python {lineage.get('python')}; "
        + ", ".join(f"{k} {v}" for k, v in sorted((lineage.get("libraries") or {}).items())),
        "",
    ]
    return "\n".join(lines)


def write(run_dir: Path) -> dict[str, Any]:
    """Write ``model_card.json`` and ``model_card.md`` into a run directory from its evidence; returns the card."""

    def read(name: str) -> bytes | None:
        path = run_dir / name
        return path.read_bytes() if path.is_file() else None

    card = build(read)
    (run_dir / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    (run_dir / CARD_MD).write_text(render(card))
    return card
