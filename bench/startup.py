"""Start-up of the ``ferry`` command, and where ``ferry train`` spends its time beyond the flow itself.

    uv run python bench/startup.py [--repeat 7] [--registry DIR]
    PREFECT_API_URL=http://127.0.0.1:4200/api uv run python bench/startup.py --train DATA --schema FILE

Part 1 runs ``ferry --help``, ``ferry status``, ``ferry models list`` and ``ferry audit verify`` (the installed
console script, each a fresh process) interleaved with ``python -c pass`` on the same interpreter, ``--repeat``
times, and prints the fastest run of each in seconds and as a ratio to that baseline. ``--registry`` is the registry
they read (default: an empty one in a temporary directory; the imports are the same).

Part 2 (``--train``, with a Prefect server at ``PREFECT_API_URL``) runs ``ferry train`` once and splits its wall time
into: before the flow run begins (start-up, imports, creating the run), the flow run (from its own log lines), and
after it ends (printing, exit handlers, leaving). It also times importing the flow module and Evidently alone, in
fresh processes, against the same baseline.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

FERRY = str(Path(sys.executable).with_name("ferry"))
COMMANDS = {
    "ferry --help": [FERRY, "--help"],
    "ferry status": [FERRY, "status"],
    "ferry models list": [FERRY, "models", "list"],
    "ferry audit verify": [FERRY, "audit", "verify"],
}
BASELINE = [sys.executable, "-c", "pass"]
LOG_TIME = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) \| \w+ +\| Flow run '[^']+' - (Beginning flow run|Finished in state)")


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def startup(repeat: int, registry: str) -> None:
    env = {**os.environ, "FERRY_REGISTRY_URL": registry, "COLUMNS": "120"}
    best = {name: float("inf") for name in ["python -c pass", *COMMANDS]}
    for _ in range(repeat):
        best["python -c pass"] = min(best["python -c pass"], wall(BASELINE, env))
        for name, argv in COMMANDS.items():
            best[name] = min(best[name], wall(argv, env))
    base = best["python -c pass"]
    print(f"start-up, fastest of {repeat} (load average {os.getloadavg()[0]:.2f})")
    print(f"{'command':<22}{'seconds':>9}{'x python -c pass':>18}")
    for name, seconds in best.items():
        print(f"{name:<22}{seconds:>9.3f}{seconds / base:>18.2f}")


def _log_times(text: str, day: datetime) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = LOG_TIME.match(line)
        if m:
            at = datetime.combine(day.date(), datetime.strptime(m.group(1), "%H:%M:%S.%f").time())
            found.setdefault(m.group(2), at.timestamp())
    return found


def train(data: str, schema: str, repeat: int) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        sys.exit("part 2 needs a running Prefect server: set PREFECT_API_URL (e.g. `prefect server start`)")
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
        env = {**os.environ, "FERRY_REGISTRY_URL": f"{tmp}/registry", "FERRY_WORK_DIR": f"{tmp}/runs"}
        began = datetime.now()
        start = time.time()
        out = subprocess.run(
            [FERRY, "train", "--data", data, "--schema", schema], env=env, capture_output=True, text=True, check=True
        )
        end = time.time()
    marks = _log_times(out.stdout + out.stderr, began)
    flow_start, flow_end = marks["Beginning flow run"], marks["Finished in state"]
    total = end - start
    print(f"ferry train on {data} (load average {os.getloadavg()[0]:.2f})")
    print(f"{'phase':<34}{'seconds':>9}{'share':>8}")
    for name, seconds in (
        ("before the flow run begins", flow_start - start),
        ("the flow run", flow_end - flow_start),
        ("after it ends, until the exit", end - flow_end),
        ("ferry train, end to end", total),
    ):
        print(f"{name:<34}{seconds:>9.2f}{seconds / total:>8.0%}")
    imports = {
        "python -c pass": BASELINE,
        "import ferry_flows.retrain": [sys.executable, "-c", "import ferry_flows.retrain"],
        "import evidently": [sys.executable, "-c", "import evidently.metrics"],
    }
    best = {name: min(wall(argv, dict(os.environ)) for _ in range(repeat)) for name, argv in imports.items()}
    print(f"{'fresh process, fastest of ' + str(repeat):<34}{'seconds':>9}{'x pass':>8}")
    for name, seconds in best.items():
        print(f"{name:<34}{seconds:>9.2f}{seconds / best['python -c pass']:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--registry", help="registry the commands read (default: an empty temporary one)")
    parser.add_argument("--train", metavar="DATA", help="also time `ferry train` on this CSV/Parquet file")
    parser.add_argument("--schema", help="the schema file of --train's data")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-") as tmp:
        startup(args.repeat, args.registry or f"{tmp}/registry")
    if args.train:
        if not args.schema:
            parser.error("--train needs --schema")
        train(args.train, args.schema, max(1, args.repeat // 2))


if __name__ == "__main__":
    main()
