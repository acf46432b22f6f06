"""What encryption at rest costs batch scoring, the monitor run and the prediction log: each with the key set
against without it, measured in one run.

    uv run python bench/at_rest.py [--rows 200000] [--logged 20000] [--rounds 3]

A churn model (6,000 demo rows, as ``bench/online.py`` trains it) is trained into a registry in clear; each
measurement copies that registry, so both variants start from the same files. The variants alternate within each
round (clear, encrypted, clear, encrypted, ...) and the medians are compared:

1. **batch**: :func:`ferry.batch.score` of ``--rows`` demo rows in two Parquet partitions, end to end (its drift
   check included: the input sample it keeps for the monitor is encrypted, and so is the Evidently report);
2. **prediction log**: ``--logged`` answers written through :class:`ferry.online.logs.PredictionLog` (1,000-row
   files) and their feedback, in process: the writing the service does behind its answers;
3. **monitor**: one monitor run over those logs as the flow runs it (``gather``, ``judge_source`` for each source,
   ``record``), which reads the encrypted logs and writes an encrypted Evidently report.

Prints seconds per variant, the encrypted/clear ratio of each, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from online import train_registry  # this folder is on the path of a script run from it

REPO = Path(__file__).resolve().parents[1]
KEY_VARIABLE = "FERRY_ENCRYPTION_KEY_FILE"


def batch_input(root: Path, rows: int) -> str:
    from ferry import demo_data

    folder = root / "input"
    folder.mkdir()
    for part in range(2):
        demo_data.make_churn(rows // 2, seed=100 + part, drift=0.5).to_parquet(folder / f"p{part}.parquet")
    return str(folder)


def time_batch(base: str, input_url: str, work: Path) -> float:
    from ferry import batch
    from ferry.registry import Registry

    shutil.copytree(base, work / "registry")
    registry = Registry(str(work / "registry"))
    started = time.perf_counter()
    batch.score(input_url, str(work / "out"), registry)
    return time.perf_counter() - started


def time_log_and_monitor(base: str, logged: int, work: Path) -> tuple[float, float]:
    from ferry import demo_data, monitor
    from ferry.cli.parity import records
    from ferry.monitor import run as one_run
    from ferry.online.holder import ModelHolder
    from ferry.online.logs import FeedbackLog, PredictionLog
    from ferry.online.predict import predict
    from ferry.registry import Registry

    shutil.copytree(base, work / "registry")
    registry = Registry(str(work / "registry"))
    holder = ModelHolder(registry, "churn", "online/champion")
    holder.refresh()
    loaded = holder.current
    assert loaded is not None
    rows = records(demo_data.make_churn(logged, seed=7, drift=0.5), loaded.schema)
    answer = predict(loaded, rows)
    started = time.perf_counter()
    log = PredictionLog(registry.url, "churn", sample_rate=1.0, buffer_rows=1000)
    feedback = FeedbackLog(registry.url, "churn", buffer_rows=1000)
    for start in range(0, logged, 100):  # requests of 100 records, as a client batching its calls
        part = answer.model_copy(update={"predictions": answer.predictions[start : start + 100]})
        log.record(loaded, rows[start : start + 100], part)
        feedback.record([(p.prediction_id, str(p.prediction)) for p in part.predictions])
    log.flush()
    feedback.flush()
    logging = time.perf_counter() - started

    version = registry.channel("churn", "online/champion")
    assert version is not None
    settings = monitor.MonitorSettings(min_rows=100)
    started = time.perf_counter()
    gathered = one_run.gather(registry, "churn", loaded.schema, settings, work / "monitor")
    judged = [one_run.judge_source(registry, "churn", version, s, settings, "bench") for s in gathered.sources]
    one_run.record(registry, "churn", version, gathered, judged, settings, datetime.now(UTC))
    return logging, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000, help="rows the batch run scores")
    parser.add_argument("--logged", type=int, default=20_000, help="answers written to the prediction log")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are compared)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.pop(KEY_VARIABLE, None)
    from ferry.storage import sealed

    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-at-rest-"))
    try:
        base = train_registry(tmp)
        input_url = batch_input(tmp, args.rows)
        (tmp / "data.key").write_text(sealed.new_key_hex() + "\n")
        times: dict[str, dict[str, list[float]]] = {
            kind: {"clear": [], "encrypted": []} for kind in ("batch", "prediction log", "monitor")
        }
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        for r in range(args.rounds):
            for variant in ("clear", "encrypted"):
                if variant == "encrypted":
                    os.environ[KEY_VARIABLE] = str(tmp / "data.key")
                else:
                    os.environ.pop(KEY_VARIABLE, None)
                work = tmp / f"{r}-{variant}"
                (work / "b").mkdir(parents=True)
                (work / "m").mkdir()
                times["batch"][variant].append(time_batch(base, input_url, work / "b"))
                logging, monitoring = time_log_and_monitor(base, args.logged, work / "m")
                times["prediction log"][variant].append(logging)
                times["monitor"][variant].append(monitoring)
                shutil.rmtree(work)
        os.environ.pop(KEY_VARIABLE, None)
        print(
            f"encryption at rest (AES-256-GCM, a data key per object): medians of {args.rounds} interleaved rounds; "
            f"batch {args.rows:,} rows, prediction log and monitor {args.logged:,} answers"
        )
        print(f"load average before: {load_before}, after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'what':16} {'clear s':>9} {'encrypted s':>12} {'encrypted/clear':>16}")
        for kind, by in times.items():
            clear, encrypted = statistics.median(by["clear"]), statistics.median(by["encrypted"])
            print(f"{kind:16} {clear:>9.2f} {encrypted:>12.2f} {encrypted / clear:>15.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
