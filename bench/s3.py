"""The demo's main job with the registry on S3 against on local disk, in one run, as ratios.

    uv run python bench/s3.py [--rows 20000] [--rounds 2]

The S3 side is moto's standalone server (a process on 127.0.0.1, started and stopped here, as the tests do) reached
through s3fs over HTTP, configured the usual way (``AWS_ENDPOINT_URL`` and the ``AWS_*`` credentials). The job is
what ``ferry demo`` does with its first batch of demo data, each step as the flows run it (plain functions): the
retrain loop (ingest, data quality, split, train, evaluate, export and parity, gate, register), the promotion to
``online/champion`` and ``edge/stable``, the edge bundle published to a TUF repository on the same store, a batch
scoring run of the same data with its output on the store, and ``ferry status``. The input data stays on local
disk, as the demo writes it; every file of the registry, the TUF repository and the scores is on the store.

Both sides run in interleaved rounds (local, S3, local, S3, ...) after a warm-up of each, and the fastest round of
each is printed per phase, with the S3/local ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = ("retrain", "promote", "publish", "batch", "status")


def job(root: str, data: Path, schema: Path, work: Path, keys: Path) -> dict[str, float]:
    """The demo's first job against the stores under ``root`` (a directory or ``s3://bucket``); seconds per phase."""
    from helpers import loop

    from ferry import batch, status
    from ferry.publish import channels as publish
    from ferry.publish.tufrepo import KeyStore, TufRepository
    from ferry.registry import Registry
    from ferry.settings import TrainSettings

    took: dict[str, float] = {}
    started = time.perf_counter()
    registry = Registry(f"{root}/registry")
    version, gate, _ = loop(data, schema, registry, work, train=TrainSettings(), channels=())
    if not gate["passed"]:
        raise SystemExit(f"the gate failed: {gate['reasons']}")
    took["retrain"] = time.perf_counter() - started
    started = time.perf_counter()
    for channel in ("online/champion", "edge/stable"):
        registry.promote(version.id, channel, model=version.model, reason="bench")
    took["promote"] = time.perf_counter() - started
    started = time.perf_counter()
    repo = TufRepository(f"{root}/edge", KeyStore(keys))
    repo.init()
    publish.publish_channel(registry, repo, version.model, "edge/stable")
    took["publish"] = time.perf_counter() - started
    started = time.perf_counter()
    batch.score(str(data), f"{root}/scores", registry)
    took["batch"] = time.perf_counter() - started
    started = time.perf_counter()
    status.collect(registry, version.model)
    took["status"] = time.perf_counter() - started
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=20_000, help="demo rows (ferry demo's default)")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds of each side, interleaved")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from s3_support import CREDENTIALS, MotoServer, make_bucket

    from ferry import demo_data

    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-s3-"))
    server = MotoServer(tmp / "moto.log").start()
    try:
        os.environ.update(CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL"] = server.url
        os.environ.pop("AWS_PROFILE", None)
        schema = tmp / "schema.yaml"
        schema.write_text(demo_data.churn_schema().dump_yaml())
        data = demo_data.write_demo(tmp / "data", n_rows=args.rows, seed=1, fmt="parquet")
        runs: dict[str, list[dict[str, float]]] = {"local": [], "s3": []}
        for n in range(args.rounds + 1):  # the first round of each side warms imports and caches up
            for side in ("local", "s3"):
                if side == "s3":
                    bucket = f"ferry-bench-{uuid.uuid4().hex[:8]}"
                    make_bucket(server.url, bucket)
                    root = f"s3://{bucket}"
                else:
                    root = str(tmp / f"local-{n}")
                took = job(root, data, schema, tmp / f"work-{side}-{n}", tmp / f"keys-{side}-{n}")
                if n:
                    runs[side].append(took)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"the demo's main job on {args.rows} demo rows, fastest of {args.rounds} interleaved rounds per side "
            f"(load average {load}); S3: moto's server on 127.0.0.1 through s3fs"
        )
        print(f"{'phase':10} {'local s':>8} {'s3 s':>8} {'s3/local':>8}")
        best = {side: {p: min(r[p] for r in rs) for p in PHASES} for side, rs in runs.items()}
        totals = {side: min(sum(r.values()) for r in rs) for side, rs in runs.items()}
        for phase in PHASES:
            local, s3 = best["local"][phase], best["s3"][phase]
            print(f"{phase:10} {local:>8.2f} {s3:>8.2f} {s3 / local:>7.2f}x")
        print(f"{'total':10} {totals['local']:>8.2f} {totals['s3']:>8.2f} {totals['s3'] / totals['local']:>7.2f}x")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
