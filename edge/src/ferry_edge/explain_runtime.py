"""The arithmetic of one explanation, in numpy alone: tile, one onnxruntime call, one weighted combine.

This module imports nothing but numpy, so that every surface (and a device, which has only numpy and
onnxruntime) runs the same steps on the same arrays:

1. :func:`tile` puts each explained row under each coalition of the plan against each background row: feature j
   comes from the row where ``masks[c, j]`` holds, else from the background row (n x m x b rows, row-major);
2. one ``session.run`` over all of them (any object with onnxruntime's ``run(output_names, feed)``);
3. :func:`combine` averages over the background to get each coalition's value ``v`` (n, m) and applies the plan's
   weights: attributions ``mean_g(weights[g] @ v)``, their standard error over the groups, the base value
   ``v[:, 0]`` (the empty coalition: the mean of f over the background) and the prediction ``v[:, -1]``.

What f is follows ferry's output contract: a classifier (outputs ``label``, ``probabilities``) is explained by the
probability of ``target`` (a class index per row; -1 or None: the class the model predicts for that row), a
regressor (outputs ``value``, ``lower``, ``upper``) by its value.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = ["Attributions", "Session", "attribute", "combine", "tile"]


class Session(Protocol):
    """What the runtime needs of an ``onnxruntime.InferenceSession``."""

    def run(self, output_names: list[str], input_feed: dict[str, Any]) -> list[Any]: ...


class Attributions(NamedTuple):
    """One explanation per row, features in the plan's column order."""

    values: np.ndarray  # (n, d) float64; each row sums to prediction - base
    error: np.ndarray  # (n, d) float64 standard error of a sampled plan; zeros for an exact one
    base: np.ndarray  # (n,) float64: mean of f over the background
    prediction: np.ndarray  # (n,) float64: f(row)
    target: np.ndarray  # (n,) int64 class index explained; -1 for a regressor


def tile(
    rows: dict[str, np.ndarray], background: dict[str, np.ndarray], names: list[str], masks: np.ndarray
) -> dict[str, np.ndarray]:
    """The input feed of every (row, coalition, background row), each input (n * m * b, 1) in the rows' dtype."""
    feed: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        x = np.asarray(rows[name]).reshape(-1, 1, 1)  # (n, 1, 1)
        bg = np.asarray(background[name]).reshape(1, 1, -1)  # (1, 1, b)
        take = masks[:, j].reshape(1, -1, 1)  # (1, m, 1)
        feed[name] = np.where(take, x, bg).astype(x.dtype).reshape(-1, 1)
    return feed


def combine(f: np.ndarray, n: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coalition values and attributions from f over the tiled rows (n * m * b,): ``(values, error, base, f(x))``."""
    groups, _, m = weights.shape
    v = np.asarray(f, dtype=np.float64).reshape(n, m, -1).mean(axis=2)  # (n, m)
    per_group = np.einsum("gdm,nm->gnd", weights, v)  # (g, n, d)
    values = per_group.mean(axis=0)
    error = per_group.std(axis=0, ddof=1) / np.sqrt(groups) if groups > 1 else np.zeros_like(values)
    return values, error, v[:, 0], v[:, -1]


def attribute(
    session: Session,
    output_names: list[str],
    rows: dict[str, np.ndarray],
    background: dict[str, np.ndarray],
    names: list[str],
    masks: np.ndarray,
    weights: np.ndarray,
    *,
    target: np.ndarray | None = None,
) -> Attributions:
    """Explain ``rows`` (one (n, 1) array per input) against ``background`` with the plan ``(masks, weights)``."""
    n = len(np.asarray(rows[names[0]]))
    b = len(np.asarray(background[names[0]]))
    m = masks.shape[0]
    out = session.run(output_names, tile(rows, background, names, masks))
    if len(out) == 3:  # regression: value, lower, upper
        f = np.asarray(out[0], dtype=np.float64).reshape(-1)
        chosen = np.full(n, -1, dtype=np.int64)
    else:  # classifier: label, probabilities
        labels = np.asarray(out[0]).reshape(n, m, b)
        probabilities = np.asarray(out[1]).reshape(n, m, b, -1)
        predicted = labels[:, -1, 0].astype(np.int64)  # the full coalition is the row itself
        asked = predicted if target is None else np.asarray(target, dtype=np.int64).reshape(n)
        chosen = np.where(asked < 0, predicted, asked)
        f = np.take_along_axis(probabilities, chosen.reshape(n, 1, 1, 1), axis=3).reshape(-1)
    values, error, base, prediction = combine(f, n, weights)
    return Attributions(values=values, error=error, base=base, prediction=prediction, target=chosen)
