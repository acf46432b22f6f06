"""Explanations: per-row interventional Shapley values computed from a version's ``model.onnx`` with onnxruntime,
against a small background sample, so that every surface that runs the same bytes gives the same attributions.

| module | what |
|---|---|
| :mod:`ferry.explain.plan` | :class:`CoalitionPlan`: the coalitions (masks) and Shapley weights, exact or sampled |
| :mod:`ferry.explain.runtime` | the numpy-only arithmetic: tile rows under the masks, one onnxruntime call, combine |
| :mod:`ferry.explain.contract` | an explanation as JSON (online, CLI) and as batch columns |
| :mod:`ferry.explain.store` | ``explain.npz``: a version's plan and background, made at registration |
| :mod:`ferry.explain.settings` | :class:`ExplainSettings` (``FERRY_EXPLAIN_``): background rows, budget, limits |
| :mod:`ferry.explain.explainer` | :class:`Explainer`: model, background and plan of a version; :func:`load_explainer` |
| :mod:`ferry.explain.importance` | a version's global importance table (``importance.json``), rank moves |
| :mod:`ferry.explain.importance_settings` | :class:`ImportanceSettings` (``FERRY_IMPORTANCE_``): rows, repeats |
| :mod:`ferry.explain.pictures` | the importance chart and the waterfall of explained rows (matplotlib, headless) |

Attributions add up: per row they sum to the prediction minus the base value (the mean prediction over the
background), for the class asked, the class predicted, or a regressor's value.
"""

from __future__ import annotations

from ferry.explain.contract import ATTRIBUTION_PREFIX, TOP_PREFIX, batch_columns, records
from ferry.explain.explainer import Explainer, Explanation, load_explainer
from ferry.explain.importance import IMPORTANCE_FILE, Importance, table_rows
from ferry.explain.importance_settings import ImportanceSettings
from ferry.explain.pictures import importance_chart, waterfall
from ferry.explain.plan import (
    MAX_EXACT_FEATURES,
    CoalitionPlan,
    exact_plan,
    permutations_within,
    plan_for,
    plan_within,
    sampled_plan,
)
from ferry.explain.runtime import Attributions, attribute, combine, tile
from ferry.explain.settings import ExplainSettings
from ferry.explain.store import EXPLAIN_FILE, ExplainFile, background_inputs, build_explain_file

__all__ = [
    "ATTRIBUTION_PREFIX",
    "EXPLAIN_FILE",
    "IMPORTANCE_FILE",
    "MAX_EXACT_FEATURES",
    "TOP_PREFIX",
    "Attributions",
    "CoalitionPlan",
    "ExplainFile",
    "ExplainSettings",
    "Explainer",
    "Explanation",
    "Importance",
    "ImportanceSettings",
    "attribute",
    "background_inputs",
    "batch_columns",
    "build_explain_file",
    "combine",
    "exact_plan",
    "importance_chart",
    "load_explainer",
    "permutations_within",
    "plan_for",
    "plan_within",
    "records",
    "sampled_plan",
    "table_rows",
    "tile",
    "waterfall",
]
