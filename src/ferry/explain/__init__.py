"""Explanations: per-row interventional Shapley values computed from a version's ``model.onnx`` with onnxruntime,
against a small background sample, so that every surface that runs the same bytes gives the same attributions.

| module | what |
|---|---|
| :mod:`ferry.explain.plan` | :class:`CoalitionPlan`: the coalitions (masks) and Shapley weights, exact or sampled |
| :mod:`ferry.explain.runtime` | the numpy-only arithmetic: tile rows under the masks, one onnxruntime call, combine |
| :mod:`ferry.explain.explainer` | :class:`Explainer`: model, background and plan of a version; :func:`load_explainer` |

Attributions add up: per row they sum to the prediction minus the base value (the mean prediction over the
background), for the class asked, the class predicted, or a regressor's value.
"""

from __future__ import annotations

from ferry.explain.explainer import (
    BACKGROUND_FILE,
    BACKGROUND_ROWS,
    Explainer,
    Explanation,
    background_inputs,
    load_explainer,
)
from ferry.explain.plan import MAX_EXACT_FEATURES, CoalitionPlan, exact_plan, plan_for, sampled_plan
from ferry.explain.runtime import Attributions, attribute, combine, tile

__all__ = [
    "BACKGROUND_FILE",
    "BACKGROUND_ROWS",
    "MAX_EXACT_FEATURES",
    "Attributions",
    "CoalitionPlan",
    "Explainer",
    "Explanation",
    "attribute",
    "background_inputs",
    "combine",
    "exact_plan",
    "load_explainer",
    "plan_for",
    "sampled_plan",
    "tile",
]
