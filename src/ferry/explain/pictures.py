"""Pictures of explanations, drawn headless with matplotlib (its Agg and SVG canvases; no window, no pyplot state):
the global importance bar chart of a version (``plot_importance.svg``) and the waterfall of explained rows
(``ferry models explain``). :func:`figure` and :func:`render` are the one way ferry draws any picture, the
evaluation plots of :mod:`ferry.train.plots` too.

SVG comes out the same for the same numbers (no date, fixed ids), so a version's files do not change by redrawing.
matplotlib is imported when a picture is drawn, never on importing ferry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ferry.explain.importance import Importance

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CANDIDATE", "CHAMPION", "FORMATS", "figure", "importance_chart", "render", "waterfall"]

FORMATS = ("svg", "png")
CANDIDATE = "#1f77b4"
CHAMPION = "#ff7f0e"
_UP, _DOWN = "#d62728", "#1f77b4"


def figure(
    width: float, height: float, *, panels: int = 1, share: bool = False, fit: bool = True
) -> tuple[Figure, list[Axes]]:
    """A figure of ``panels`` axes side by side (sharing both axes when ``share``), drawn without pyplot. ``fit``
    lays it out around its labels (matplotlib's constrained layout: about half the drawing time of a small figure);
    without, fixed margins that suit short labels."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained" if fit else None)
    if not fit:
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.12, top=0.86, wspace=0.12)
    axes = fig.subplots(1, panels, sharex=share, sharey=share, squeeze=False)[0]
    return fig, list(axes)


def render(fig: Figure, fmt: str = "svg") -> bytes:
    """The figure as SVG or PNG bytes."""
    import io

    import matplotlib

    if fmt not in FORMATS:
        raise ValueError(f"a picture is written as {' or '.join(FORMATS)}, not {fmt!r}")
    out = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "ferry", "svg.fonttype": "none"}):
        fig.savefig(out, format=fmt, metadata=metadata, dpi=100)
    return out.getvalue()


def importance_chart(table: Importance, *, version: str | None = None, fmt: str = "svg") -> bytes:
    """Horizontal bars of each feature's mean |attribution| (largest on top) and, beside them on their own axis,
    its permutation loss of the primary metric with the spread over repeats."""
    features = list(table.features)[::-1]
    names = [f.feature for f in features]
    fig, (left, right) = figure(10, 1.2 + 0.32 * len(names), panels=2)
    y = list(range(len(names)))
    left.barh(y, [f.mean_abs_attribution for f in features], color=CANDIDATE)
    left.set_yticks(y, names)
    left.set_xlabel(f"mean |attribution| ({table.rows} holdout rows)")
    right.barh(y, [f.permutation for f in features], xerr=[f.permutation_std for f in features], color=CHAMPION)
    right.set_yticks(y, [""] * len(y))
    right.axvline(0, color="black", linewidth=0.8)
    right.set_xlabel(f"{table.metric} loss when shuffled ({table.holdout_rows} rows, {table.repeats} repeats)")
    fig.suptitle("Global importance" + (f" of {version}" if version else ""))
    return render(fig, fmt)


def _steps(row: Mapping[str, Any], top_k: int) -> list[tuple[str, float]]:
    """The row's top features with their attributions, then the rest summed as one step."""
    top = [(t["feature"], float(t["attribution"])) for t in row["top"][:top_k]]
    shown = {name for name, _ in top}
    rest = [float(v) for name, v in row["attributions"].items() if name not in shown]
    if rest:
        top.append((f"{len(rest)} other feature{'s' if len(rest) > 1 else ''}", sum(rest)))
    return top


def waterfall(rows: Sequence[Mapping[str, Any]], *, top_k: int, title: str = "", fmt: str = "svg") -> bytes:
    """One waterfall per explained row (:func:`ferry.explain.records` objects), one under another: from the base
    value, each of the ``top_k`` features (then the others together) moves the answer to the value explained."""
    heights = [len(_steps(row, top_k)) for row in rows]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, sum(1.4 + 0.35 * h for h in heights)), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False, height_ratios=[1.4 + 0.35 * h for h in heights])[:, 0]
    for i, (ax, row) in enumerate(zip(axes, rows, strict=True)):
        steps = _steps(row, top_k)
        start = float(row["base_value"])
        for position, (_, value) in enumerate(steps):
            ax.barh(position, value, left=start, color=_UP if value >= 0 else _DOWN)
            ax.text(start + value, position, f" {value:+.4g} ", va="center", ha="left" if value >= 0 else "right")
            start += value
        ax.set_yticks(range(len(steps)), [name for name, _ in steps])
        ax.invert_yaxis()
        ax.margins(x=0.2)
        ax.axvline(float(row["base_value"]), color="grey", linewidth=0.8, linestyle=":")
        ax.axvline(float(row["value"]), color="black", linewidth=0.8)
        what = f"P({row['class']})" if row.get("class") is not None else "value"
        ax.set_title(
            f"row {i + 1}: {what} = {float(row['value']):.4g} from base {float(row['base_value']):.4g}"
            + ("" if row.get("exact") else " (sampled estimate)"),
            loc="left",
            fontsize="medium",
        )
    if title:
        fig.suptitle(title)
    return render(fig, fmt)
