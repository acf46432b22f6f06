"""The gate step of a run: every check in one verdict, per task.

- every task: Evidently's data quality (``data_quality.json``), ONNX parity, behaviour (declared directions, batch
  invariance) and, with a champion, the comparison on the task's primary metric in its direction.
- binary: P(positive) within ``parity_max_abs_diff`` and every label; ECE; Evidently's binary metrics, compared on
  ``primary_metric``; directions on P(positive).
- multiclass: every class probability within ``parity_max_abs_diff`` and every label; Evidently's multiclass
  ClassificationPreset, a macro-F1 floor, compared on ``multiclass_primary_metric``; directions on
  P(direction_class), invariance of every probability.
- regression: values within ``parity_max_rel_diff`` times the target's std; the interval's empirical coverage on the
  holdout rows that did not calibrate it; Evidently's RegressionPreset, an R² floor, compared on
  ``regression_primary_metric`` (lower is better); directions on the value.

The champion is scored on the candidate's holdout with its own schema and ``model.onnx``; a champion of another
task, or with other classes, cannot be compared and the gate fails closed. Any stage that errors fails closed.
"""

from __future__ import annotations

import json
import math
import operator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferry import storage
from ferry.data import to_onnx_inputs
from ferry.errors import FerryError
from ferry.gate.behaviour import direction_tests, invariance_test, positive_scores
from ferry.gate.evidently_adapter import model_quality
from ferry.gate.verdict import Check, GateResult, decide, fail_closed
from ferry.registry.store import Registry
from ferry.registry.versions import ModelVersion
from ferry.schema import Schema
from ferry.scoring import OnnxScorer, Scores, ValueScores
from ferry.settings import GateSettings
from ferry.train import metrics as evaluate
from ferry.train.metrics import conformal_split
from ferry.train.pipeline import model_frame
from ferry.train.run_files import read_json, read_model, read_parquet, run_schema, write_atomic, write_json

__all__ = ["answers", "champion_answers", "run_gate"]


def answers(scorer: OnnxScorer, holdout: pd.DataFrame, schema: Schema) -> np.ndarray:
    """(n, k) probabilities of a multiclass model, P(positive) of a binary one, values of a regressor."""
    if schema.kind == "binary":
        return positive_scores(scorer, holdout, schema)
    found = scorer.answer(to_onnx_inputs(holdout, schema))
    if isinstance(found, Scores):
        return found.probabilities.astype(np.float64)
    return found.values.astype(np.float64)


def champion_answers(registry: Registry, version: ModelVersion, holdout: pd.DataFrame, schema: Schema) -> np.ndarray:
    """The champion's answers on the candidate's holdout, using the champion's own schema and ONNX model."""
    champ = Schema.from_dict(
        json.loads(registry.read_bytes(version, "schema.json")), source=f"champion {version.id} schema.json"
    )
    if champ.kind != schema.kind:
        raise FerryError(f"the champion {version.id} is a {champ.kind} model and the candidate {schema.kind}")
    if schema.kind == "multiclass" and [str(c) for c in champ.target_classes] != [
        str(c) for c in schema.target_classes
    ]:
        raise FerryError(
            f"the champion {version.id} has classes {list(champ.target_classes)}, the candidate "
            f"{list(schema.target_classes)}; promote the candidate by hand (ferry promote) if that is intended"
        )
    missing = [c for c in champ.feature_names if c not in holdout.columns]
    if missing:
        raise FerryError(f"the champion {version.id} needs column(s) {missing} that the new holdout lacks")
    return answers(OnnxScorer(registry.read_bytes(version, "model.onnx")), holdout, champ)


def _behaviour_checks(run_dir: Path, schema: Schema, holdout: pd.DataFrame, settings: GateSettings) -> list[Check]:
    scorer = OnnxScorer(read_model(run_dir / "model.onnx"))
    frame = model_frame(holdout, schema)
    checks = [
        _bounded(r.name, r.observed, ">=", settings.min_direction_agreement, f"{r.detail} ({r.rows} rows)")
        for r in direction_tests(scorer, frame, schema)
    ]
    inv = invariance_test(scorer, frame, schema)
    checks.append(_bounded(inv.name, inv.observed, "<=", settings.max_invariance_diff, inv.detail))
    return checks


def _bounded(name: str, observed: float | str, op: str, bound: float, detail: str) -> Check:
    """``observed`` held to ``bound`` by ``op`` (``<=``, ``>=`` or ``==``); an observed "inf" fails."""
    value = math.inf if observed == "inf" else float(observed)
    compare = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}[op]
    return Check(name, observed, f"{op} {bound:g}", bool(math.isfinite(value) and compare(value, bound)), detail=detail)


def _parity_checks(parity: dict[str, Any], schema: Schema, settings: GateSettings) -> list[Check]:
    observed = float(parity["max_abs_diff"]) if parity["max_abs_diff"] != "inf" else "inf"
    rows = parity["rows"]
    if schema.kind == "regression":
        detail = f"|sklearn - onnxruntime| / std of the target, on all {rows} holdout rows"
        return [_bounded("onnx.parity_max_rel_diff", observed, "<=", settings.parity_max_rel_diff, detail)]
    every = " (every class)" if schema.kind == "multiclass" else ""
    return [
        _bounded(
            "onnx.parity_max_abs_diff",
            observed,
            "<=",
            settings.parity_max_abs_diff,
            f"sklearn vs onnxruntime{every} on all {rows} holdout rows",
        ),
        _bounded(
            "onnx.parity_label_agreement",
            float(parity["label_agreement"]),
            "==",
            1,
            f"sklearn vs onnxruntime labels on all {rows} holdout rows",
        ),
    ]


def _coverage_check(run_dir: Path, schema: Schema, holdout: pd.DataFrame, settings: GateSettings) -> list[Check]:
    """The ONNX model's interval, checked on the holdout rows that did not calibrate it."""
    interval = read_json(run_dir / "interval.json")
    found = OnnxScorer(read_model(run_dir / "model.onnx")).answer(to_onnx_inputs(holdout, schema))
    if not isinstance(found, ValueScores):
        raise FerryError("the regression model does not answer a value and an interval")
    _, check = conformal_split(len(holdout), int(interval.get("seed", 0)))
    y = holdout[schema.target].to_numpy(dtype=np.float64)[check]
    inside = (found.lower[check] <= y) & (y <= found.upper[check])
    seen = float(inside.mean()) if len(check) else float("nan")
    coverage = float(interval["coverage"])
    # a few check rows vary by chance: allow two binomial standard errors when that is more than the setting
    chance = 2 * math.sqrt(coverage * (1 - coverage) / max(len(check), 1))
    bound = round(coverage - max(settings.max_coverage_shortfall, chance), 4)
    detail = (
        f"{interval['coverage']:g} interval (±{interval['half_width']:.4g}) on {len(check)} holdout rows not used to "
        "calibrate it"
    )
    return [_bounded("model.interval_coverage", seen, ">=", bound, detail)]


def run_gate(
    run_dir: Path,
    registry: Registry,
    settings: GateSettings,
    *,
    champion_channel: str = "online/champion",
) -> GateResult:
    """All checks in one verdict (see the module docstring). Any stage that errors makes the gate fail closed, with
    the error recorded."""
    schema = run_schema(run_dir)
    checks: list[Check] = [Check(**c) for c in read_json(run_dir / "data_quality.json")]
    errors: list[str] = []
    checks += _parity_checks(read_json(run_dir / "parity.json"), schema, settings)
    holdout = read_parquet(run_dir / "holdout.parquet")
    if schema.kind == "binary":
        metrics = read_json(run_dir / "metrics.json")
        checks.append(
            _bounded("model.ece", metrics["ece"], "<=", settings.max_ece, "expected calibration error, 10 bins")
        )
    elif schema.kind == "regression" and (
        err := fail_closed(lambda: _coverage_check(run_dir, schema, holdout, settings), checks)
    ):
        errors.append(err)

    y = holdout[schema.target].to_numpy()
    champion_id = registry.channel(schema.name, champion_channel)
    champion: np.ndarray | None = None
    if champion_id is not None:
        try:
            champion = champion_answers(registry, registry.get(champion_id, model=schema.name), holdout, schema)
        except Exception as exc:  # a champion we cannot score means we cannot compare: fail closed
            errors.append(f"cannot score the champion {champion_id} on the holdout: {type(exc).__name__}: {exc}")

    if champion is not None:
        champion_metrics = evaluate.task_metrics(schema.kind, y, champion, schema.target_classes)
        write_json(run_dir / "champion_metrics.json", champion_metrics)

    def quality() -> list[Check]:
        cand = answers(OnnxScorer(read_model(run_dir / "model.onnx")), holdout, schema)
        html = run_dir / "gate.html"
        found, _ = model_quality(
            y, cand, settings, task=schema.kind, champion_answers=champion, champion=champion_id, html_path=html
        )
        return found

    if not errors:
        err = fail_closed(quality, checks)
        if err is not None:
            errors.append(err)
    err = fail_closed(lambda: _behaviour_checks(run_dir, schema, holdout, settings), checks)
    if err is not None:
        errors.append(err)
    if not (run_dir / "gate.html").exists():
        storage.atomic_write_sealed(storage.local_fs(), str(run_dir / "gate.html"), _error_html(errors))
    result = decide(checks, champion=champion_id, error="; ".join(errors) if errors else None)
    write_atomic(run_dir / "gate.json", result.to_json().encode())
    return result


def _error_html(errors: list[str]) -> bytes:
    import html

    items = "".join(f"<li>{html.escape(e)}</li>" for e in errors) or "<li>no report</li>"
    return f"<!doctype html><title>ferry gate</title><h1>Gate failed closed</h1><ul>{items}</ul>".encode()
