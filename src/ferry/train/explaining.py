"""The explain step of a run (after the gate, before the model card): the candidate's global importance table
(``importance.json``, :mod:`ferry.explain.importance`) with its rank moves against the champion the gate compared,
and the version's pictures: ``plot_importance.svg``, ``plot_waterfall.svg`` (one holdout row explained) and the
task's evaluation plots (:mod:`ferry.train.plots`), each with that champion beside the candidate.

``importance.json`` holds aggregates only and stays in clear, like the metrics; the pictures draw holdout rows
(points, curves), so they are encrypted at rest when a key is set, like the Evidently reports.

The champion's ranking is read from its ``importance.json``, or measured on the same holdout rows with its own
``explain.npz`` when it has none; a champion with neither, or one that cannot be scored on this holdout, leaves the
table without rank moves and says why (``champion_note``): the step never fails a run over the champion.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferry import storage
from ferry.data import to_onnx_inputs
from ferry.explain import EXPLAIN_FILE, Explainer, ExplainFile, ExplainSettings, load_explainer, records
from ferry.explain.importance import (
    IMPORTANCE_FILE,
    Importance,
    mean_abs_attribution,
    permutation_importance,
    ranks,
    sample_rows,
)
from ferry.explain.importance_settings import ImportanceSettings
from ferry.explain.pictures import importance_chart, waterfall
from ferry.registry.store import Registry
from ferry.schema import Schema
from ferry.scoring import OnnxScorer
from ferry.settings import GateSettings
from ferry.train.gating import answers, champion_answers
from ferry.train.metrics import LOWER_IS_BETTER, primary_metric, primary_value
from ferry.train.plots import evaluation_plots
from ferry.train.run_files import read_json, read_model, read_parquet, run_schema, write_json

__all__ = ["IMPORTANCE_PLOT", "MAX_TILE_ROWS", "WATERFALL_PLOT", "explain_candidate"]

IMPORTANCE_PLOT = "plot_importance.svg"
WATERFALL_PLOT = "plot_waterfall.svg"
"""One explained row of the version drawn as a waterfall: the first row of the holdout sample the table explains,
for the class predicted (a regressor: its value), as ``ferry models explain`` draws any row a user asks about."""
MAX_TILE_ROWS = 200_000
"""Tiled rows per onnxruntime call while explaining the holdout sample (bounds memory; the values do not change)."""


def _champion_ranking(
    registry: Registry, champion_id: str, model: str, sample: pd.DataFrame
) -> tuple[dict[str, int] | None, str | None]:
    """The champion's ranks by mean |attribution| and, when there are none, why."""
    try:
        champion = registry.get(champion_id, model=model)
        if IMPORTANCE_FILE in champion.files:
            table = Importance.from_dict(json.loads(registry.read_bytes(champion, IMPORTANCE_FILE)))
            return table.ranking(), None
        if EXPLAIN_FILE not in champion.files:
            return None, f"the champion {champion_id} has no {IMPORTANCE_FILE} nor {EXPLAIN_FILE} to rank its features"
        schema = registry.schema(champion)
        explainer = load_explainer(registry, champion)
        explainer.max_tile_rows = MAX_TILE_ROWS
        found = mean_abs_attribution(explainer, to_onnx_inputs(sample, schema))
        return dict(zip(schema.feature_names, ranks(found), strict=True)), None
    except Exception as exc:  # the champion's ranking is context, never a reason to fail the run
        return None, f"cannot rank the champion {champion_id}'s features: {type(exc).__name__}: {exc}"


def _importance(
    run_dir: Path, schema: Schema, holdout: pd.DataFrame, model: bytes, metric: str, seed: int, how: ImportanceSettings
) -> tuple[dict[str, Any], pd.DataFrame, Explainer]:
    """The candidate's measures (the fields of :class:`Importance` but the champion's), the rows explained and the
    explainer that explained them."""
    stored = ExplainFile.from_bytes(storage.read_bytes(storage.local_fs(), str(run_dir / EXPLAIN_FILE)))
    explainer = Explainer(model, schema, stored.background, plan=stored.plan, max_tile_rows=MAX_TILE_ROWS)
    sample = holdout.iloc[sample_rows(len(holdout), limit=how.rows, seed=seed)].reset_index(drop=True)
    attribution = mean_abs_attribution(explainer, to_onnx_inputs(sample, schema))
    scorer = OnnxScorer(model)
    y = holdout[schema.target].to_numpy()
    lower = metric in LOWER_IS_BETTER
    features = list(schema.feature_names)

    def score(inputs: dict[str, np.ndarray]) -> float:
        frame = pd.DataFrame({name: np.asarray(inputs[name]).reshape(-1) for name in features})
        return primary_value(schema.kind, metric, y, answers(scorer, frame, schema), schema.target_classes)

    baseline, loss, spread = permutation_importance(
        score, {name: holdout[name].to_numpy() for name in features}, features,
        lower_is_better=lower, repeats=how.repeats, seed=seed,
    )  # fmt: skip
    measures = {
        "names": features,
        "attribution": attribution,
        "permutation": loss,
        "permutation_std": spread,
        "task": schema.kind,
        "rows": len(sample),
        "holdout_rows": len(holdout),
        "exact": stored.plan.exact,
        "metric": metric,
        "lower_is_better": lower,
        "baseline": baseline,
        "repeats": how.repeats,
        "seed": seed,
    }
    return measures, sample, explainer


def _example_waterfall(explainer: Explainer, schema: Schema, sample: pd.DataFrame) -> bytes:
    """The waterfall of the sample's first row, explained as every surface explains it (one row is one call)."""
    k = min(ExplainSettings().top_k, len(explainer.features))
    found = explainer.explain(to_onnx_inputs(sample.head(1), schema), top_k=k)
    return waterfall(records(found), top_k=k, title=f"{schema.name}: one holdout row explained")


def explain_candidate(
    run_dir: Path,
    registry: Registry,
    settings: GateSettings | None = None,
    explain: ExplainSettings | None = None,
    importance: ImportanceSettings | None = None,
) -> dict[str, Any]:
    """Write ``importance.json``, ``plot_importance.svg``, ``plot_waterfall.svg`` and the evaluation plots into the
    run directory (after the
    gate: the champion is the one ``gate.json`` names). Returns the table, the files written and the seconds taken."""
    started = time.perf_counter()
    settings = settings or GateSettings()
    seed = (explain or ExplainSettings()).seed
    schema = run_schema(run_dir)
    holdout = read_parquet(run_dir / "holdout.parquet")
    model = read_model(run_dir / "model.onnx")
    gate = read_json(run_dir / "gate.json") if (run_dir / "gate.json").exists() else {}
    champion_id = gate.get("champion")
    how = importance or ImportanceSettings()
    metric = primary_metric(schema.kind, settings)
    measures, sample, explainer = _importance(run_dir, schema, holdout, model, metric, seed, how)
    previous, note = (None, None)
    if champion_id is not None:
        previous, note = _champion_ranking(registry, champion_id, schema.name, sample)
    table = Importance.build(
        measures.pop("names"), measures.pop("attribution"), measures.pop("permutation"),
        measures.pop("permutation_std"), previous=previous, champion=champion_id, champion_note=note, **measures,
    )  # fmt: skip
    write_json(run_dir / IMPORTANCE_FILE, table.to_dict())
    pictures = {
        IMPORTANCE_PLOT: importance_chart(table),
        WATERFALL_PLOT: _example_waterfall(explainer, schema, sample),
    }
    champion = None
    if champion_id is not None:
        try:
            champion = champion_answers(registry, registry.get(champion_id, model=schema.name), holdout, schema)
        except Exception:  # the gate recorded why the champion cannot be scored; the plots show the candidate
            champion = None
    y = holdout[schema.target].to_numpy()
    candidate = answers(OnnxScorer(model), holdout, schema)
    pictures.update(
        evaluation_plots(
            schema.kind, y, candidate, classes=schema.target_classes, champion=champion, champion_id=champion_id
        )
    )
    for name, data in pictures.items():  # they draw holdout rows (points, curves): sealed like the reports
        storage.atomic_write_sealed(storage.local_fs(), str(run_dir / name), data)
    return {"importance": table.to_dict(), "plots": sorted(pictures), "seconds": time.perf_counter() - started}
