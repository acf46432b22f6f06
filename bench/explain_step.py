"""What the explain step (global importance and pictures) adds to a retrain, per task, against the rest of the same
retrain measured in the same run.

    uv run python bench/explain_step.py [--tasks binary,multiclass,regression]

Per task, two retrains through the plain step functions (as the flow runs them, without Prefect) into one registry:
the first has no champion, the second (other rows of the same data) has the first as its champion, so its explain
step also ranks the champion's features and draws its answers beside the candidate's. Each retrain prints the
seconds of every other step together (ingest to register), of the explain step, and their ratio. The data: the demo
churn data (binary, 6,000 rows, 15 features: a sampled plan), the defects example (multiclass, 700 rows, logistic
regression) and the demand example (regression, 700 rows, ridge), as the test fixtures train them. Importing
matplotlib is timed apart (once per process).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ferry import demo_data
from ferry.registry import Registry
from ferry.settings import GateSettings, TrainSettings
from ferry.train import steps

REPO = Path(__file__).resolve().parents[1]


def _example(name: str, path: Path, rows: int, seed: int) -> Path:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "examples" / name / "make_csv.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out: Path = module.write_csv(path, rows, seed=seed)
    return out


def _data(task: str, root: Path, seed: int) -> tuple[Path, Path, TrainSettings]:
    if task == "binary":
        schema = root / "churn.yaml"
        schema.write_text(demo_data.churn_schema().dump_yaml())
        return (
            demo_data.write_demo(root / f"churn-{seed}", n_rows=6000, seed=seed, fmt="parquet"),
            schema,
            TrainSettings(),
        )
    name, estimator = ("defects", "logistic_regression") if task == "multiclass" else ("demand", "ridge")
    data = _example(name, root / f"{name}-{seed}.csv", 700, seed)
    return data, REPO / "examples" / name / "schema.yaml", TrainSettings(estimator=estimator)


def retrain(data: Path, schema: Path, registry: Registry, work: Path, train: TrainSettings) -> dict[str, Any]:
    gate = GateSettings()
    run = steps.new_run_dir(work)
    started = time.perf_counter()
    steps.ingest(str(data), str(schema), run)
    steps.check_data_quality(run, gate)
    steps.split_data(run, train)
    steps.train_candidate(run, train)
    steps.evaluate_candidate(run, train)
    steps.export_onnx(run)
    steps.check_parity(run, gate)
    steps.run_gate(run, registry, gate)
    before = time.perf_counter()
    found = steps.explain_candidate(run, registry, gate)
    explain = time.perf_counter() - before
    steps.write_lineage(run)
    steps.write_model_card(run)
    version = steps.register_candidate(run, registry)
    steps.promote_if_passed(registry, version, ["online/champion"], reason="bench")
    rest = time.perf_counter() - started - explain
    return {"rest": rest, "explain": explain, "champion": found["importance"]["champion"], "plots": found["plots"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="binary,multiclass,regression")
    args = parser.parse_args()
    started = time.perf_counter()
    import matplotlib.figure  # noqa: F401

    print(f"import matplotlib: {time.perf_counter() - started:.2f} s (once per process)")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for task in args.tasks.split(","):
            registry = Registry(str(root / f"registry-{task}"))
            for seed in (11, 12):
                data, schema, train = _data(task, root, seed)
                found = retrain(data, schema, registry, root / "runs", train)
                compared = f"champion {found['champion']}" if found["champion"] else "no champion"
                print(
                    f"{task:<10} {compared:<26} rest of the retrain {found['rest']:6.2f} s   explain step "
                    f"{found['explain']:5.2f} s   ratio {found['explain'] / found['rest']:.2f}   "
                    f"({len(found['plots'])} pictures)"
                )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
