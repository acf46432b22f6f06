"""Batch scoring throughput and peak memory: ferry's streaming path against a naive and an in-memory baseline.

    uv run python bench/batch.py [--rows 200000] [--partitions 4] [--skip-flow] [--ferry-only] [--threads 1]
                                 [--task binary|multiclass|regression] [--explain [--explain-rows 2000]]

A HistGradientBoosting model of ``--task`` (the demo churn data by default; a 10-class model or the demand regressor,
``bench/tasks.py``) is trained (20,000 rows) and promoted in a temporary registry; ``--rows`` rows of the same data
are written as ``--partitions`` Parquet files. Then, each in its own subprocess (so peak RSS figures do not mix)
and all on the same files:

1. naive: ``pandas.read_parquet`` of everything, then the scikit-learn pipeline's ``predict_proba`` on that frame
   (one OpenMP thread), nothing else (no validation, and missing categories reach the pipeline as None where
   ferry's encoding gives "", so its scores differ on those rows: it is a throughput baseline only);
2. onnx in memory: onnxruntime on arrays already in memory (loading, validation and encoding are not timed), once
   in one call and once in 65,536-row slices (ferry's record batch size); the faster of the two is the practical
   limit the ratio is taken against;
3. ferry: :func:`ferry.batch.score`, end to end (lock, plan, stream, validate, score, write Parquet, manifest, and
   the input-drift check, in a process started with the run that samples the input and checks it while the
   partitions score), and once more with ``FERRY_BATCH_DRIFT=false``: the difference is what the drift check costs
   end to end; the check's own time and how long the run waited for it after scoring are also printed, and the
   drift process's peak RSS beside the scoring one's;
4. unless ``--skip-flow``: the ``batch-score`` flow against the bare function on the same input (thread runner, one
   worker), and the flow on a Dask ``LocalCluster`` of 1 and of 2 single-threaded worker processes (each timed
   after one unmeasured warm-up run on the same cluster).

With ``--explain``, only two paths run, both with ``FERRY_BATCH_DRIFT=false``: ferry score on the ``--rows`` rows,
and ``ferry score --explain`` on the first ``--explain-rows`` of them (each explained row costs the version's
coalitions x background rows of model evaluations, so fewer rows give the same rate); the ratio of their rows/s is
what explanations cost, with the evaluations per row and the ``FERRY_EXPLAIN_BUDGET`` the 0.1x goal would need.

With ``--ferry-only``, only ferry score runs (for 20M rows, where the in-memory paths would need tens of GB). Every
path uses one onnxruntime/OpenMP thread per process, or ``--threads`` of them. Figures are printed as rows/s, peak
RSS and ratios against the baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks import TASKS, task_data

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

CHUNK = 250_000


def peak_rss_mb() -> float:
    """This process's peak RSS. On Linux from VmHWM: ``ru_maxrss`` keeps the high-water mark of the process image
    before ``exec``, so a worker spawned by a parent that prepared the data would report the parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------------- setup


def prepare(root: Path, rows: int, partitions: int, task: str = "binary") -> dict[str, str]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ferry.registry import Registry
    from ferry.settings import GateSettings, TrainSettings
    from ferry.train import steps as core

    spec = task_data(task)
    schema, train = spec.write(root / "train", 20_000, seed=1)
    registry = Registry(str(root / "registry"))
    run = core.new_run_dir(root / "runs")
    gate = GateSettings()
    core.ingest(str(train), str(schema), run)
    core.check_data_quality(run, gate)
    core.split_data(run, TrainSettings())
    core.train_candidate(run, TrainSettings())
    core.evaluate_candidate(run)
    core.export_onnx(run)
    core.check_parity(run, gate)
    core.run_gate(run, registry, gate)
    core.write_lineage(run)
    version = core.register_candidate(run, registry)
    registry.promote(version.id, "online/champion", model=spec.model, reason="bench", force=True)

    data = root / "input"
    data.mkdir()
    per_part = -(-rows // partitions)
    written = 0
    for p in range(partitions):
        n_part = min(per_part, rows - written)
        arrow_schema = pa.Schema.from_pandas(spec.make(50, 0), preserve_index=False)
        with pq.ParquetWriter(data / f"part-{p:03d}.parquet", arrow_schema) as writer:
            done = 0
            while done < n_part:
                n = min(CHUNK, n_part - done)
                frame = spec.make(n, 1000 + p * 1000 + done // CHUNK)
                frame[spec.id] = np.array([f"R{written + done + i:09d}" for i in range(n)], dtype=object)
                writer.write_table(pa.Table.from_pandas(frame, schema=arrow_schema, preserve_index=False))
                done += n
        written += n_part
    return {
        "registry": str(root / "registry"),
        "version": version.id,
        "input": str(data),
        "run": str(run),
        "model": spec.model,
        "task": task,
    }


# ------------------------------------------------------------------------------------------------------ workers


def _threads(setup: dict[str, Any]) -> int:
    return int(setup.get("threads", 1))


def _model(setup: dict[str, Any]) -> Any:
    from ferry import batch

    return batch.load_model(setup["registry"], setup["model"], setup["version"], threads=_threads(setup))


def worker_naive(setup: dict[str, str]) -> dict[str, Any]:
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from ferry.train.run_files import load_pipeline

    pipeline = load_pipeline(Path(setup["run"]) / "model.skops")
    start = time.perf_counter()
    answer = pipeline.predict if setup["task"] == "regression" else pipeline.predict_proba
    with threadpool_limits(_threads(setup)):
        prob = answer(pd.read_parquet(setup["input"]))
    return {"seconds": time.perf_counter() - start, "rows": len(prob)}


def worker_onnx(setup: dict[str, str]) -> dict[str, Any]:
    import pandas as pd

    from ferry.data import to_onnx_inputs, validate

    model = _model(setup)
    inputs = to_onnx_inputs(validate(pd.read_parquet(setup["input"]), model.schema, require_target=False), model.schema)
    rows = len(next(iter(inputs.values())))
    start = time.perf_counter()
    model.scorer.answer(inputs)
    seconds = time.perf_counter() - start
    step = 65_536
    start = time.perf_counter()
    for i in range(0, rows, step):
        model.scorer.answer({k: v[i : i + step] for k, v in inputs.items()})
    return {"seconds": seconds, "sliced_seconds": time.perf_counter() - start, "rows": rows}


def worker_ferry(setup: dict[str, str]) -> dict[str, Any]:
    from ferry import batch
    from ferry.registry import Registry

    out = Path(setup["out"]) / "ferry"
    start = time.perf_counter()
    registry = Registry(setup["registry"])
    summary = batch.score(setup["input"], str(out), registry, version=setup["version"], model=setup["model"])
    seconds = time.perf_counter() - start
    drift = summary.drift or {}
    return {
        "seconds": seconds,
        "rows": summary.scored,
        "drift_seconds": drift.get("seconds", 0.0),
        "drift_waited_seconds": drift.get("waited_seconds", 0.0),
        "drift": drift.get("status", "off"),
        # the drift process, joined by now: its ru_maxrss (an upper bound, see peak_rss_mb)
        "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def worker_flow(setup: dict[str, str]) -> dict[str, Any]:
    from distributed import LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from ferry import batch
    from ferry.registry import Registry
    from ferry_flows.batch_score import batch_score

    out = Path(setup["out"])
    common: dict[str, Any] = {
        "input": setup["input"],
        "registry_url": setup["registry"],
        "version": setup["version"],
        "model": setup["model"],
    }
    times: dict[str, Any] = {}
    with prefect_test_harness(server_startup_timeout=300):
        batch_score(output=str(out / "warm"), runner="thread", workers=1, **common)  # warm-up: first flow run
        start = time.perf_counter()
        registry = Registry(setup["registry"])
        summary = batch.score(
            setup["input"], str(out / "bare"), registry, version=setup["version"], model=setup["model"]
        )
        times["bare"] = time.perf_counter() - start
        start = time.perf_counter()
        batch_score(output=str(out / "flow"), runner="thread", workers=1, **common)
        times["flow"] = time.perf_counter() - start
        for n in (1, 2):
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:  # type: ignore[no-untyped-call]
                address = str(cluster.scheduler_address)
                # warm-up: every worker process imports ferry and loads the model once
                batch_score(output=str(out / f"warm-dask{n}"), cluster_address=address, **common)
                start = time.perf_counter()
                batch_score(output=str(out / f"dask{n}"), cluster_address=address, **common)
                times[f"dask{n}"] = time.perf_counter() - start
    times["rows"] = summary.scored
    return times


def worker_ferry_nodrift(setup: dict[str, str]) -> dict[str, Any]:
    os.environ["FERRY_BATCH_DRIFT"] = "false"
    return worker_ferry(setup)


def worker_ferry_explain(setup: dict[str, str]) -> dict[str, Any]:
    os.environ["FERRY_BATCH_DRIFT"] = "false"
    from ferry import batch
    from ferry.registry import Registry

    start = time.perf_counter()
    registry = Registry(setup["registry"])
    summary = batch.score(
        setup["explain_input"],
        str(Path(setup["out"]) / "explained"),
        registry,
        version=setup["version"],
        model=setup["model"],
        explain=True,
    )
    seconds = time.perf_counter() - start
    plan = batch.load_batch_explainer(setup["registry"], setup["model"], setup["version"])
    background = len(next(iter(plan.background.values())))
    return {
        "seconds": seconds,
        "rows": summary.scored,
        "coalitions": int(plan.plan.masks.shape[0]),
        "background": background,
        "exact": plan.plan.exact,
        "features": len(plan.features),
    }


WORKERS = {
    "naive": worker_naive,
    "onnx": worker_onnx,
    "ferry": worker_ferry,
    "ferry_nodrift": worker_ferry_nodrift,
    "flow": worker_flow,
    "ferry_explain": worker_ferry_explain,
}


def run_worker(name: str, setup: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", name, "--setup", json.dumps(setup)]
    threads = str(setup.get("threads", 1))  # OpenMP (scikit-learn) and ferry's onnxruntime session alike
    env = {**os.environ, "OMP_NUM_THREADS": threads, "FERRY_BATCH_THREADS": threads}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------------------------------------- main


class LoadSampler:
    """Samples the 1-minute load average every few seconds while the measurements run (the machine is shared)."""

    def __init__(self, every: float = 5.0) -> None:
        import threading

        self.samples: list[float] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self._every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def text(self) -> str:
        if not self.samples:
            return "n/a"
        mean = sum(self.samples) / len(self.samples)
        return f"{mean:.2f} mean ({min(self.samples):.2f} to {max(self.samples):.2f}) on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="rows to score (e.g. 2000000)")
    parser.add_argument("--partitions", type=int, default=4, help="Parquet files the rows are split into")
    parser.add_argument("--skip-flow", action="store_true", help="skip the Prefect flow and Dask measurements")
    parser.add_argument(
        "--ferry-only",
        action="store_true",
        help="measure only ferry score (rows/s, peak RSS): for sizes where the in-memory paths cannot run (20M rows)",
    )
    parser.add_argument(
        "--task", choices=TASKS, default="binary", help="which model to score with (default binary, the demo churn)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per path: OpenMP for scikit-learn, intra-op for onnxruntime, FERRY_BATCH_THREADS for ferry",
    )
    parser.add_argument(
        "--explain", action="store_true", help="measure ferry score --explain against plain ferry score (no drift)"
    )
    parser.add_argument("--explain-rows", type=int, default=2_000, help="rows explained with --explain")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = WORKERS[args.worker](json.loads(args.setup))
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    root = Path(tempfile.mkdtemp(prefix="ferry-bench-batch-"))
    try:
        start = time.perf_counter()
        setup = prepare(root, args.rows, args.partitions, args.task)
        size = sum(p.stat().st_size for p in Path(setup["input"]).iterdir()) / 2**20
        print(
            f"{args.rows:,} rows in {args.partitions} Parquet files ({size:.0f} MiB), prepared in "
            f"{time.perf_counter() - start:.0f} s; model {setup['model']} {setup['version']} (HistGradientBoosting, "
            f"{args.task})"
        )
        with LoadSampler() as load:
            measure(root, setup, args)
        print(f"load average during the measurements: {load.text()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(root: Path, setup: dict[str, str], args: argparse.Namespace) -> None:
    if args.explain:
        measure_explain(root, setup, args)
        return
    names = ("ferry",) if args.ferry_only else ("naive", "onnx", "ferry", "ferry_nodrift")
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        out = root / f"out-{name}"
        results[name] = run_worker(name, {**setup, "out": str(out), "threads": args.threads})
        shutil.rmtree(out, ignore_errors=True)
    print(f"{'path':<40}{'rows/s':>12}{'seconds':>10}{'peak RSS MB':>13}")
    rows: dict[str, tuple[str, float, float]] = {}  # label, rows/s, seconds
    if "naive" in results:
        r = results["naive"]
        rows["naive"] = ("naive pandas.read_parquet + predict_proba", r["rows"] / r["seconds"], r["seconds"])
    if "onnx" in results:
        r = results["onnx"]
        rows["onnx"] = ("onnxruntime in memory, one call", r["rows"] / r["seconds"], r["seconds"])
        rows["onnx_sliced"] = (
            "onnxruntime in memory, 65,536-row slices",
            r["rows"] / r["sliced_seconds"],
            r["sliced_seconds"],
        )
    r = results["ferry"]
    rows["ferry"] = ("ferry score (streaming, end to end)", r["rows"] / r["seconds"], r["seconds"])
    if "ferry_nodrift" in results:
        r = results["ferry_nodrift"]
        rows["ferry_nodrift"] = ("ferry score, FERRY_BATCH_DRIFT=false", r["rows"] / r["seconds"], r["seconds"])
    for key, (label, rate, seconds) in rows.items():
        rss = results[key if key in results else key.split("_")[0]]["peak_rss_mb"]
        print(f"{label:<40}{rate:>12,.0f}{seconds:>10.2f}{rss:>13,.0f}")
    ferry = rows["ferry"][1]
    if "onnx" in rows:
        limit = max(rows["onnx"][1], rows["onnx_sliced"][1])
        print(f"ferry / onnx in memory (the faster): {ferry / limit:.2f}x rows/s (goal >= 0.85)")
        bare = rows["ferry_nodrift"][1]
        print(f"  without the drift check:           {bare / limit:.2f}x rows/s")
    if "naive" in rows:
        print(f"ferry / naive:                       {ferry / rows['naive'][1]:.2f}x rows/s (goal >= 3)")
        print(f"  without the drift check:           {rows['ferry_nodrift'][1] / rows['naive'][1]:.2f}x rows/s")
        rss_ratio = results["ferry"]["peak_rss_mb"] / results["naive"]["peak_rss_mb"]
        print(f"peak RSS ferry / naive:              {rss_ratio:.2f}x")
    own, child = results["ferry"]["peak_rss_mb"], results["ferry"]["children_peak_rss_mb"]
    print(
        f"peak RSS of ferry score: {own:,.0f} MB scoring, {child:,.0f} MB drift process, {own + child:,.0f} MB "
        "together (goal < 1,024)"
    )
    print("raw:", json.dumps(results, sort_keys=True))
    r = results["ferry"]
    print(
        f"the input-drift check itself (Evidently on the sample, after its import) took {r['drift_seconds']:.2f} s; "
        f"after the last partition scored, the run waited {r['drift_waited_seconds']:.2f} s for it"
    )
    if "ferry_nodrift" in results:
        extra = r["seconds"] - results["ferry_nodrift"]["seconds"]
        print(f"end to end, drift on costs {extra:.2f} s over FERRY_BATCH_DRIFT=false")
    if not args.skip_flow and not args.ferry_only:
        f = run_worker("flow", {**setup, "out": str(root / "out-flow")})
        print(
            f"bare ferry.batch.score {f['bare']:.2f} s, batch-score flow (thread runner, 1 worker) "
            f"{f['flow']:.2f} s: flow / bare {f['flow'] / f['bare']:.2f}x"
        )
        print(
            f"flow on Dask LocalCluster: 1 worker {f['dask1']:.2f} s, 2 workers {f['dask2']:.2f} s: "
            f"speed-up {f['dask1'] / f['dask2']:.2f}x (goal >= 1.7)"
        )


def measure_explain(root: Path, setup: dict[str, str], args: argparse.Namespace) -> None:
    """Plain ferry score against ferry score --explain, both without the drift check, rows/s as a ratio."""
    import pyarrow.parquet as pq

    first = sorted(Path(setup["input"]).iterdir())[0]
    (root / "explain-input").mkdir()
    pq.write_table(pq.read_table(first).slice(0, args.explain_rows), root / "explain-input" / "part.parquet")
    common = {**setup, "threads": args.threads, "explain_input": str(root / "explain-input")}
    plain = run_worker("ferry_nodrift", {**common, "out": str(root / "out-plain")})
    explained = run_worker("ferry_explain", {**common, "out": str(root / "out-explain")})
    print(f"{'path':<48}{'rows':>12}{'rows/s':>12}{'seconds':>10}{'peak RSS MB':>13}")
    for label, r in (("ferry score, FERRY_BATCH_DRIFT=false", plain), ("ferry score --explain (same)", explained)):
        rate, rss = r["rows"] / r["seconds"], r["peak_rss_mb"]
        print(f"{label:<48}{r['rows']:>12,}{rate:>12,.1f}{r['seconds']:>10.2f}{rss:>13,.0f}")
    ratio = (explained["rows"] / explained["seconds"]) / (plain["rows"] / plain["seconds"])
    evaluations = explained["coalitions"] * explained["background"]
    kind = "exact" if explained["exact"] else "sampled"
    print(
        f"explain / plain: {ratio:.5f}x rows/s (goal >= 0.1); {explained['features']} features, {kind} plan of "
        f"{explained['coalitions']} coalitions x {explained['background']} background rows = {evaluations:,} model "
        f"evaluations per explained row"
    )
    if ratio < 0.1:
        print(
            f"the goal is missed by {0.1 / ratio:,.0f}x; at this rate it needs about {evaluations * ratio / 0.1:,.1f} "
            "evaluations per explained row (FERRY_EXPLAIN_BUDGET counts the same evaluations)"
        )
    print("raw:", json.dumps({"plain": plain, "explain": explained}, sort_keys=True))


if __name__ == "__main__":
    main()
