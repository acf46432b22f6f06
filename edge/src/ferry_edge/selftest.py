"""The golden-sample self-test, run in a child process before a new model is switched in.

``python -m ferry_edge.selftest DIR [--budget-ms N]`` prints a JSON report and exits 0 when the model reproduces
its golden outputs (within tolerance, no NaN, right shapes) and scores one row within the latency budget. The
golden outputs follow the task: a classifier's ``labels`` must be equal and its ``probabilities`` within
:data:`TOLERANCE` (absolute); a regressor's ``value``, ``lower`` and ``upper`` within :data:`REL_TOLERANCE` of
their size (relative, since a target's scale can be anything).
A model that crashes onnxruntime takes only this child process down. :func:`run` starts that child and reads its
report (or its death) into an outcome.

A bundle that carries ``explain.npz`` also explains its first golden row: the file must read as an explanation
of the model's features, the value explained must be the model's answer for that row, and the attributions must
add up to it minus the base value (within :data:`TOLERANCE` of its size).

The report's ``outcome`` tells two kinds of "not ok" apart:

- ``failed``: the bundle is wrong. Its outputs differ, hold NaN or have the wrong shape, or the model cannot be
  loaded or run. The same bytes would fail again, so the agent rejects the bundle.
- ``incomplete``: the test could not be carried out. The device ran out of memory, or the single-row latency missed
  the budget, which load on the device can cause. The agent retries later, a bounded number of times. A child that
  never reports (killed by a signal, timed out) counts as incomplete too.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ferry_edge.errors import BundleRejected, SelfTestIncomplete
from ferry_edge.points import pause_point

if TYPE_CHECKING:
    from ferry_edge.model import EdgeModel

TOLERANCE = 1e-6
REL_TOLERANCE = 1e-6


def _class_problems(outputs: list[np.ndarray], golden: dict[str, Any], n: int) -> list[str]:
    labels, probs = outputs
    expected = np.asarray(golden.get("probabilities"), dtype=np.float64)
    if probs.shape != expected.shape or labels.shape != (n,):
        return [f"output shapes {labels.shape}/{probs.shape}, expected ({n},)/{expected.shape}"]
    if np.isnan(probs).any():
        return ["the model outputs NaN"]
    problems = []
    diff = float(np.abs(probs.astype(np.float64) - expected).max(initial=0.0))
    if diff > TOLERANCE:
        problems.append(f"golden outputs differ by {diff:.3g} (> {TOLERANCE:g})")
    if [int(x) for x in labels] != list(golden.get("labels") or []):
        problems.append("golden labels differ")
    return problems


def _value_problems(outputs: list[np.ndarray], golden: dict[str, Any], n: int) -> list[str]:
    problems = []
    for name, got in zip(("value", "lower", "upper"), outputs, strict=True):
        expected = np.asarray(golden.get(name), dtype=np.float64)
        if got.shape != (n,) or expected.shape != (n,):
            problems.append(f"{name}: output shape {got.shape}, expected ({n},) (golden {expected.shape})")
        elif not np.isfinite(got).all():
            problems.append(f"{name}: the model outputs NaN or infinity")
        else:
            rel = np.abs(got.astype(np.float64) - expected) / np.maximum(np.abs(expected), 1.0)
            worst = float(rel.max(initial=0.0))
            if worst > REL_TOLERANCE:
                problems.append(f"golden {name} differs by {worst:.3g} relative (> {REL_TOLERANCE:g})")
    return problems


def _explain_problems(model: EdgeModel, row: dict[str, Any], outputs: list[np.ndarray]) -> list[str]:
    """What is wrong with the explanation of the first golden row (nothing when the bundle has no explain.npz)."""
    if not model.explainable:
        return []
    try:
        (found,) = model.explain([row], top_k=1)
    except BundleRejected as exc:
        return [str(exc)]
    if model.task == "regression":
        answer = float(outputs[0][0])
    else:
        labels, probs = outputs
        answer = float(probs[0, int(labels[0])])
    value, base = found["value"], found["base_value"]
    total = sum(found["attributions"].values())
    scale = max(1.0, abs(value))
    if not np.isfinite([value, base, total]).all():
        return ["the explanation of golden row 0 holds NaN or infinity"]
    if abs(value - answer) > TOLERANCE * scale:
        return [f"the explanation of golden row 0 explains {value!r}, the model answers {answer!r}"]
    if abs(total - (value - base)) > TOLERANCE * scale:
        return [f"the attributions of golden row 0 add up to {total!r}, not the value minus the base {value - base!r}"]
    return []


def check(directory: Path, *, budget_ms: float) -> dict[str, Any]:
    from ferry_edge.model import EdgeModel

    model = EdgeModel(directory)
    golden = model.manifest["golden"]
    rows = golden["rows"]
    outputs = model.run(model.prepare(rows))
    judge = _value_problems if model.task == "regression" else _class_problems
    problems = judge(outputs, golden, len(rows))  # the bundle's fault
    if rows and not problems:
        problems = _explain_problems(model, rows[0], [a[:1] for a in outputs])
    slow: list[str] = []  # the device's moment
    single = model.prepare(rows[:1])
    timings = []
    for _ in range(20):
        start = time.perf_counter()
        model.run(single)
        timings.append((time.perf_counter() - start) * 1000)
    p50 = float(np.median(timings))
    if p50 > budget_ms:
        slow.append(f"single-row latency p50 {p50:.2f} ms is over the {budget_ms:g} ms budget")
    outcome = "failed" if problems else "incomplete" if slow else "passed"
    return {
        "version": model.version,
        "ok": outcome == "passed",
        "outcome": outcome,
        "problems": problems + slow,
        "p50_ms": p50,
        "rows": len(rows),
    }


def run(directory: Path, *, budget_ms: float, timeout_s: float) -> None:
    """Run the self-test of ``directory`` in a child process. Returns when it passed; BundleRejected when the bundle
    failed it; SelfTestIncomplete when it did not complete (the child was killed, timed out, ran out of memory or
    missed the latency budget)."""
    cmd = [sys.executable, "-m", "ferry_edge.selftest", str(directory), "--budget-ms", str(budget_ms)]
    try:  # the child's standard error is the agent's: its diagnostics reach the device's log
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise SelfTestIncomplete(f"the self-test did not finish within {timeout_s:g} s") from None
    except OSError as exc:
        raise SelfTestIncomplete(f"the self-test could not start: {exc}") from exc
    if out.returncode < 0:
        raise SelfTestIncomplete(f"the self-test was killed by {_signal_name(-out.returncode)}")
    try:
        report = json.loads(out.stdout.strip().splitlines()[-1])
        if not isinstance(report, dict):
            raise ValueError("not an object")
    except (ValueError, IndexError):
        raise SelfTestIncomplete(f"the self-test ended (exit {out.returncode}) without a report") from None
    if report.get("ok") is True:
        return
    problems = "; ".join(str(p) for p in report.get("problems") or ["no problem named"])
    if report.get("outcome") == "incomplete":
        raise SelfTestIncomplete(f"the self-test did not complete: {problems}")
    raise BundleRejected(f"self-test failed: {problems}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferry_edge.selftest")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--budget-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    pause_point("self-testing")
    try:
        report = check(args.directory, budget_ms=args.budget_ms)
    except MemoryError as exc:  # the device's memory, not the bundle
        report = {"ok": False, "outcome": "incomplete", "problems": [f"out of memory: {exc}"]}
    except Exception as exc:  # any other failure to run the sample is a failed self-test
        report = {"ok": False, "outcome": "failed", "problems": [f"{type(exc).__name__}: {exc}"]}
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
