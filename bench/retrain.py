"""Wall time of each step of the retrain flow, against the same steps called as plain functions, per task.

    uv run python bench/retrain.py [--rows 20000] [--task binary|multiclass|regression]

``--task``: the demo churn data (binary, the default), a 10-class model or the demand regressor (``bench/tasks.py``).

Both run in this one process on the same data files, interleaved, after one unmeasured warm-up round; each figure
is the fastest of ``--repeat`` rounds. The ratio column (flow task / plain function) is the cost Prefect adds to
each step, and "flow / plain" the cost it adds to the whole loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks import TASKS, task_data

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

STEPS = ["ingest", "data-quality", "split", "train", "evaluate", "export-onnx", "parity", "gate", "register", "promote"]


def bare_steps(data: Path, schema: Path, registry_url: str, work: Path) -> dict[str, float]:
    from ferry.registry import Registry
    from ferry.settings import GateSettings, TrainSettings
    from ferry.train import steps as core

    registry, train, gate = Registry(registry_url), TrainSettings(), GateSettings()
    run = core.new_run_dir(work)
    calls: dict[str, Any] = {
        "ingest": lambda: core.ingest(str(data), str(schema), run),
        "data-quality": lambda: core.check_data_quality(run, gate),
        "split": lambda: core.split_data(run, train),
        "train": lambda: core.train_candidate(run, train),
        "evaluate": lambda: core.evaluate_candidate(run),
        "export-onnx": lambda: core.export_onnx(run),
        "parity": lambda: core.check_parity(run, gate),
        "gate": lambda: core.run_gate(run, registry, gate),
        "register": lambda: (core.write_lineage(run), core.register_candidate(run, registry))[1],
    }
    times: dict[str, float] = {}
    version = None
    for name, call in calls.items():
        start = time.perf_counter()
        result = call()
        times[name] = time.perf_counter() - start
        if name == "register":
            version = result
    start = time.perf_counter()
    core.promote_if_passed(registry, version, ["online/champion"], reason="bench")
    times["promote"] = time.perf_counter() - start
    return times


def task_times(flow_run_id: Any) -> dict[str, float]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> dict[str, float]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {r.name.rsplit("-", 1)[0]: r.total_run_time.total_seconds() for r in runs}

    return asyncio.run(read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows of demo data (default 20000)")
    parser.add_argument("--repeat", type=int, default=2, help="measured rounds; each figure is the fastest (default 2)")
    parser.add_argument("--task", choices=TASKS, default="binary", help="which model to train (default binary)")
    args = parser.parse_args()

    from prefect import flow

    from ferry_flows.retrain import retrain

    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
        root = Path(tmp)
        os.environ["FERRY_WORK_DIR"] = str(root / "runs")
        spec = task_data(args.task)
        schema, data = spec.write(root / "data", args.rows, seed=1)

        @flow(name="bench-warm-up")
        def warm_up() -> None:
            """Starts the ephemeral Prefect server so its start-up is not charged to the retrain flow."""

        warm_up()
        bare_steps(data, schema, str(root / "warm-registry"), root / "runs")  # imports and caches, not measured
        bare: dict[str, float] = {}
        tasks: dict[str, float] = {}
        flow_wall = float("inf")
        for i in range(args.repeat):  # interleaved, so load on the machine hits both alike
            for step, sec in bare_steps(data, schema, str(root / f"bare-registry-{i}"), root / "runs").items():
                bare[step] = min(bare.get(step, sec), sec)
            start = time.perf_counter()
            state = retrain(
                data=str(data),
                schema_file=str(schema),
                registry_url=str(root / f"flow-registry-{i}"),
                return_state=True,
            )
            wall = time.perf_counter() - start
            assert state.is_completed(), state
            if wall < flow_wall:
                flow_wall, tasks = wall, task_times(state.state_details.flow_run_id)

    print(
        f"retrain of {spec.model} ({args.task}) on {args.rows} rows: flow {flow_wall:.2f} s, plain functions "
        f"{sum(bare.values()):.2f} s"
    )
    print(f"{'step':<14}{'flow task s':>12}{'plain s':>10}{'task/plain':>12}{'share of flow':>15}")
    for step in STEPS:
        t, b = tasks.get(step, float("nan")), bare[step]
        print(f"{step:<14}{t:>12.3f}{b:>10.3f}{t / b:>12.2f}{t / flow_wall:>15.1%}")
    overhead = flow_wall - sum(tasks.get(s, 0.0) for s in STEPS)
    print(f"{'(orchestration)':<14}{overhead:>12.3f}{'':>10}{'':>12}{overhead / flow_wall:>15.1%}")
    print(f"flow / plain functions: {flow_wall / sum(bare.values()):.2f}x")


if __name__ == "__main__":
    main()
