"""Input drift of a batch run: the sampled rows of its partitions against the version's reference, with Evidently.

- :func:`check_drift` runs the check and writes its evidence to the output's ``drift/`` folder.
- :class:`DriftProcess` runs that same check in a second process started when a run starts: importing Evidently
  (about 10 s of CPU) then overlaps scoring on another core instead of following it.
- :func:`warm_drift` imports Evidently in a thread instead, for a process that does not score meanwhile (the flow's).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Generator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ferry.batch_io import OutputDir
from ferry.errors import FerryError
from ferry.registry import Registry
from ferry.schema import Schema

if TYPE_CHECKING:
    from ferry.batch import BatchSettings

log = logging.getLogger("ferry.batch")

__all__ = ["DriftProcess", "check_drift", "drift_process", "warm_drift"]

_ANSWER_GRACE_S = 120.0  # beyond the check's own time limit: the import and reading the samples
_EXIT_WAIT_S = 5.0  # for the drift process to stop once told to


def _import_evidently() -> None:
    with contextlib.suppress(Exception):  # any failure shows again, and is reported, in the drift check itself
        import evidently.metrics  # noqa: F401


def warm_drift() -> None:
    """Import Evidently in a background thread, so a drift check later in this process does not wait for it.

    Importing Evidently takes about 10 s of CPU, most of a drift check's time. Call it only in a process that does
    not score meanwhile (the flow's, when partitions run in other processes): the import holds the GIL, and in the
    scoring process it slowed scoring by more than the import itself (measured: 2M rows took 29 s instead of 21 s).
    Safe to call more than once.
    """
    if "evidently.metrics" not in sys.modules:
        threading.Thread(target=_import_evidently, name="ferry-warm-drift", daemon=True).start()


def _drift_sample(out: OutputDir, keys: list[str], cap: int) -> pd.DataFrame | None:
    frames = []
    for key in keys:
        path = out.drift_sample(key)
        if out.fs.exists(path):
            with out.fs.open(path, "rb") as fh:
                frames.append(pq.read_table(fh).to_pandas())
    if not frames:
        return None
    sample: pd.DataFrame = pd.concat(frames, ignore_index=True)
    if len(sample) > cap:
        keep = np.sort(np.random.default_rng(0).choice(len(sample), size=cap, replace=False))
        sample = sample.iloc[keep].reset_index(drop=True)
    return sample


def _drift_text(d: dict[str, Any]) -> str:
    if d["status"] in ("drifted", "no drift"):
        drifted = [c["feature"] for c in d["columns"] if c["drifted"]]
        text = (
            f"{d['status']}: {len(drifted)} of {len(d['columns'])} features drifted (share {d['drifted_share']:.2f}, "
            f"bound {d['drift_share']:g}) on {d['sample_rows']:,} sampled rows against {d['reference_rows']:,} "
            "reference rows"
        )
        return text + (f" ({', '.join(drifted)})" if drifted else "")
    return f"{d['status']}: {d['detail']}"


def _keep_for_monitor(registry: Registry, model: str, version: str, sample: pd.DataFrame, output_url: str) -> None:
    """The run's input sample, kept in the registry where the monitor flow reads batch inputs."""
    from ferry import monitor

    try:
        monitor.record_batch_input(registry, model, sample, version=version, run=output_url)
    except (FerryError, OSError) as exc:
        log.warning("could not keep the input sample for the monitor flow: %s", exc)


def _settings(settings: BatchSettings | None) -> BatchSettings:
    from ferry.batch import BatchSettings

    return settings or BatchSettings()


def _summary(s: BatchSettings) -> dict[str, Any]:
    return {
        "status": "failed",
        "detail": "",
        "report": None,
        "columns": [],
        "drifted_share": None,
        "drift_share": s.drift_share,
        "sample_rows": 0,
        "reference_rows": 0,
    }


def _failed(d: dict[str, Any], why: str) -> None:
    d["status"], d["detail"] = "failed", f"the drift check failed ({why}); the scores are unaffected"


def _write_summary(out: OutputDir, d: dict[str, Any], started: float) -> dict[str, Any]:
    d["seconds"] = round(time.perf_counter() - started, 4)
    d["text"] = _drift_text(d)
    with out.fs.open(out.path("drift", "summary.json"), "wb") as fh:
        fh.write((json.dumps(d, indent=2, sort_keys=True, default=str) + "\n").encode())
    return d


def check_drift(
    output_url: str,
    registry_url: str,
    model: str,
    version: str,
    *,
    settings: BatchSettings | None = None,
    storage_options: dict[str, Any] | None = None,
    process: DriftProcess | None = None,
) -> dict[str, Any]:
    """Input drift of a run: the finished partitions' samples against the version's reference, with Evidently.

    Writes Evidently's report to ``drift/report.html`` (and its snapshot JSON) in the output, and this summary to
    ``drift/summary.json``. Never raises for a missing reference or a failing check: ``status`` is ``drifted``,
    ``no drift``, ``no reference``, ``no sample`` or ``failed``, ``detail``/``text`` say why, and ``columns``
    holds one row per feature (feature, method, score, threshold, drifted). With ``process``, the check runs there
    (see :class:`DriftProcess`); when that process dies, hangs or fails, the summary says ``failed`` and why.
    """
    from ferry import gate

    s = _settings(settings)
    started = time.perf_counter()
    out = OutputDir(output_url, storage_options=storage_options)
    d = _summary(s)
    if process is not None:
        limit_s = s.drift_timeout_s + _ANSWER_GRACE_S
        kwargs = {"settings": s, "storage_options": storage_options}
        answer, why = process.ask((output_url, registry_url, model, version), kwargs, limit_s=limit_s)
        if answer is not None:
            return dict(answer)
        _failed(d, why)
        log.warning("input drift: %s", d["detail"])
        return _write_summary(out, d, started)
    try:
        registry = Registry(registry_url)
        v = registry.get(version, model=model)
        schema = Schema.from_dict(json.loads(registry.read_bytes(v, "schema.json")), source=f"{v.model}/{v.id}")
        sample = _drift_sample(out, sorted(out.read_manifest()), s.drift_max_rows)
        if "reference.parquet" not in v.files:
            d["status"] = "no reference"
            d["detail"] = (
                f"version {v.model}/{v.id} has no reference sample (reference.parquet), so input drift was not "
                "checked; versions trained by the retrain flow carry one"
            )
        elif sample is None:
            d["status"] = "no sample"
            d["detail"] = "no scored rows were sampled (every row was rejected, or the partitions predate sampling)"
        else:
            _keep_for_monitor(registry, v.model, v.id, sample, output_url)
            reference = pd.read_parquet(io.BytesIO(registry.read_bytes(v, "reference.parquet")))
            with tempfile.TemporaryDirectory(prefix="ferry-drift-") as tmp:
                html = Path(tmp) / "report.html"
                result = gate.input_drift(
                    reference,
                    sample,
                    schema,
                    drift_share=s.drift_share,
                    timeout_s=s.drift_timeout_s,
                    html_path=html,
                )
                for name in ("report.html", "report.evidently.json"):
                    out.fs.put_file(str(Path(tmp) / name), out.path("drift", name))
            d.update(
                status="drifted" if result.drifted else "no drift",
                report=out.location("drift", "report.html"),
                columns=[asdict(c) for c in result.columns],
                drifted_share=result.drifted_share,
                sample_rows=result.current_rows,
                reference_rows=result.reference_rows,
            )
    except (FerryError, OSError, ImportError) as exc:  # evidence must not undo a finished run
        _failed(d, str(exc))
    except Exception as exc:  # e.g. a corrupt sample file: still only a failed check
        _failed(d, f"{type(exc).__name__}: {exc}")
    return _write_summary(out, d, started)


# ------------------------------------------------------------------------------------------------ drift process

# What the drift process runs: the ferry package it is started from comes first on its path.
_CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from ferry.batch_drift import _serve; _serve()"


def _serve() -> None:
    """The drift process: import Evidently at once, then run the one check read from stdin; answer on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the scoring process, which stops this one
    if hasattr(os, "nice"):
        os.nice(10)  # scoring keeps its cores and the import takes what is left (measured: as fast or faster)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the check prints goes to stderr, not into the answer
    _import_evidently()
    try:
        job = pickle.load(sys.stdin.buffer)
    except EOFError:  # the run ended without a check
        return
    try:
        answer: tuple[str, Any] = ("done", check_drift(*job["args"], **job["kwargs"]))
    except Exception as exc:  # anything check_drift lets through is still only a failed check
        answer = ("failed", f"{type(exc).__name__}: {exc}")
    pickle.dump(answer, answers)
    answers.flush()
    sys.stderr.flush()
    os._exit(0)  # not waiting for an Evidently thread that outlived its time limit


class DriftProcess:
    """A Python process that imports Evidently as soon as it starts, then runs one :func:`check_drift`.

    A run starts it first and asks for the check (``check_drift(..., process=...)``) when scoring ends, so the
    import overlaps scoring on another core. It is a plain subprocess of this interpreter, not a multiprocessing
    one: it never imports the caller's main module. Always :meth:`close` it (or use it as a context manager): that
    stops the process however the run ends.
    """

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[1])
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, package_root], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, args: tuple[Any, ...], kwargs: dict[str, Any], *, limit_s: float) -> tuple[Any, str]:
        """Have the process call ``check_drift(*args, **kwargs)``: its answer, or None and why there is none."""
        try:
            out, _ = self.process.communicate(pickle.dumps({"args": args, "kwargs": kwargs}), timeout=limit_s)
        except subprocess.TimeoutExpired:
            return None, f"its process did not answer within {limit_s:g} s"
        except Exception as exc:  # e.g. storage options that cannot be sent to another process
            return None, f"{type(exc).__name__}: {exc}"
        try:
            kind, value = pickle.loads(out)
        except Exception:  # no answer, or half of one
            return None, f"its process ended with exit code {self.process.returncode} before it answered"
        return (value, "") if kind == "done" else (None, str(value))

    def close(self) -> None:
        """Stop the process, at once when it has not answered (it may still be importing), and reap it."""
        p = self.process
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(_EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for pipe in (p.stdin, p.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> DriftProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def drift_process(enabled: bool) -> Generator[DriftProcess | None, None, None]:
    """A :class:`DriftProcess` when ``enabled`` and it starts, else None (the check then runs in this process)."""
    if not enabled:
        yield None
        return
    try:
        child = DriftProcess()
    except OSError as exc:
        log.warning("could not start the drift check's process (%s); it runs in this process instead", exc)
        yield None
        return
    with child:
        yield child
