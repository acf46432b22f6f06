"""What a retrain run says to people: the rows of the summary, metrics and gate tables, as plain data and as
Markdown. The Prefect artifacts and the CLI's rich tables are both drawn from these."""

from __future__ import annotations

import math
import re
from typing import Any

from ferry import storage
from ferry.settings import StorageSettings
from ferry.train.metrics import METRIC_NAMES

__all__ = [
    "artifact_rows",
    "as_link",
    "fmt",
    "gate_rows",
    "markdown_summary",
    "markdown_table",
    "markdown_text",
    "metric_rows",
    "report_note",
]


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.4f}"
    return "" if value is None else str(value)


def metric_rows(metrics: dict[str, Any], champion: dict[str, Any] | None = None) -> list[dict[str, str]]:
    rows = []
    for name in METRIC_NAMES:
        if name in metrics:
            row = {"metric": name, "candidate": fmt(metrics[name])}
            if champion is not None:
                row["champion"] = fmt(champion.get(name))
            rows.append(row)
    return rows


def gate_rows(checks: list[dict[str, Any]], *, group_passing: bool = False) -> list[dict[str, str]]:
    """One row per check. With ``group_passing``, passing per-column checks of one kind (``name[column]``) that share
    a threshold collapse into one row showing the worst column, so a 40-column schema stays readable."""
    rows = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in checks:
        kind, _, column = c["name"].partition("[")
        if group_passing and c["passed"] and column and isinstance(c["observed"], float):
            key = (kind, c["threshold"])
            if key not in groups:
                groups[key] = []
                rows.append({"check": kind, "value": "", "threshold": c["threshold"], "pass": "PASS", "_group": key})
            groups[key].append(c)
            continue
        rows.append(
            {
                "check": c["name"],
                "value": fmt(c["observed"]),
                "threshold": c["threshold"],
                "pass": "PASS" if c["passed"] else "FAIL",
            }
        )
    for row in rows:
        key = row.pop("_group", None)
        if key is None:
            continue
        members = groups[key]
        worst = (
            max(members, key=lambda m: m["observed"])
            if key[1].startswith("<")
            else min(members, key=lambda m: m["observed"])
        )
        if len(members) == 1:
            row["check"], row["value"] = worst["name"], fmt(worst["observed"])
        else:
            row["check"] = f"{key[0]}[{len(members)} columns, worst {worst['name'].partition('[')[2].rstrip(']')}]"
            row["value"] = fmt(worst["observed"])
    return rows


_INLINE = re.compile(r"([\\`*\[\]<>#|~&!])")
_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_LEADING = re.compile(r"^(\s*)([+\-=]|\d+[.)])(?=\s|$)")


def markdown_text(value: Any) -> Any:
    """``value`` as markdown that renders as the same text: the Prefect UI renders every table artifact cell as
    markdown, where ``>= 500`` would become a block quote, ``*`` emphasis and ``<b>`` HTML. Markup characters get a
    backslash (CommonMark's escape; ``_`` only at a word's edge, since ``device_os`` is never emphasis and column
    names stay readable in the artifact's data), a leading list marker too, and line breaks become spaces.
    Numbers, booleans and None are left as they are (they render as themselves)."""
    if not isinstance(value, str):
        return value
    text = _INLINE.sub(r"\\\1", " ".join(value.splitlines()))
    text = _EDGE_UNDERSCORE.sub(r"\\_", text)
    return _LEADING.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


def artifact_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a table artifact with every cell escaped (:func:`markdown_text`): the one way ferry's flows
    make table artifacts."""
    return [{str(k): markdown_text(v) for k, v in row.items()} for row in rows]


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_none_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(markdown_text(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(markdown_text(r.get(c, ""))) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def markdown_summary(outcome: dict[str, Any]) -> str:
    """The run's one-page summary for the Prefect UI."""
    verdict = (
        "**promoted**"
        if outcome["promoted"]
        else ("gate passed, not promoted" if outcome["gate_passed"] else "**rejected**")
    )
    lines = [
        f"# Retrain of `{outcome['model']}`: {verdict}",
        "",
        f"- **version**: `{outcome['version']}`",
        f"- **data**: `{outcome['data_url']}` ({outcome['rows']} rows, sha256 `{outcome['data_sha256'][:16]}…`)",
        f"- **champion compared**: `{outcome['champion'] or 'none (first model: absolute floors only)'}`",
        f"- **promoted to**: {', '.join(f'`{c}`' for c in outcome['promoted']) or 'nothing'}",
        f"- **version directory**: `{outcome['version_url']}`",
        f"- **gate report**: `{outcome['gate_html']}`",
        *report_note(outcome["gate_html"]),
        "",
    ]
    if outcome["reasons"]:
        lines += ["## Why it was rejected", ""] + [f"- {r}" for r in outcome["reasons"]] + [""]
    lines += [
        "## Metrics (holdout)",
        "",
        markdown_table(metric_rows(outcome["metrics"], outcome.get("champion_metrics"))),
    ]
    lines += ["## Gate", "", markdown_table(gate_rows(outcome["checks"]))]
    return "\n".join(lines)


def as_link(location: str, settings: StorageSettings | None = None) -> str:
    """A URL for a Prefect artifact: a local path as an absolute file:// URI, an object-store location as a presigned
    HTTPS URL valid ``FERRY_LINK_EXPIRY_S`` (:func:`ferry.storage.link`, with the registry's storage options)."""
    s = settings or StorageSettings()
    return storage.link(location, s.storage_options, expiry_s=s.link_expiry_s)


def report_note(url: str) -> list[str]:
    """A line saying how to open a report that is encrypted at rest (none when reports are written in clear)."""
    from ferry.storage import sealed

    if sealed.keyring() is None:
        return []
    return [f"- the reports are encrypted at rest: `ferry keys decrypt {url} -o report.html` writes one in clear"]
