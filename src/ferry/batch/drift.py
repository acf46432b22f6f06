"""Input drift of a batch run: the sampled rows of its partitions against the version's reference, with Evidently.

- :func:`check_drift` runs the check and writes its evidence to the output's ``drift/`` folder; partitions that
  finished without a sample get theirs drawn from the input first.
- :func:`warm_drift` imports Evidently in a thread, for a process that does not score meanwhile (the flow's).

Evidently itself is reached through :mod:`ferry.gate.evidently_adapter`; :mod:`ferry.batch.drift_process` runs this
same check in a second process.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ferry.batch.output import OutputDir
from ferry.batch.partitions import Partition
from ferry.batch.sample import sample_partition
from ferry.batch.settings import BatchSettings
from ferry.errors import FerryError
from ferry.gate.evidently_adapter import import_evidently, input_drift
from ferry.monitor.answers import answer_columns
from ferry.monitor.sources import record_batch_input
from ferry.registry.store import Registry
from ferry.schema import Schema

__all__ = ["check_drift", "warm_drift"]

_ANSWER_GRACE_S = 120.0  # beyond the check's own time limit: the import and reading the samples


log = logging.getLogger("ferry.batch")


def warm_drift() -> None:
    """Import Evidently in a background thread, so a drift check later in this process does not wait for it.

    Importing Evidently takes about 10 s of CPU, most of a drift check's time. Call it only in a process that does
    not score meanwhile (the flow's, when partitions run in other processes): the import holds the GIL, and in the
    scoring process it slowed scoring by more than the import itself (measured: 2M rows took 29 s instead of 21 s).
    Safe to call more than once.
    """
    if "evidently.metrics" not in sys.modules:
        threading.Thread(target=import_evidently, name="ferry-warm-drift", daemon=True).start()


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
    """The run's input sample with the version's answers on it (the task's prediction columns, as the online log
    has them), kept in the registry where the monitor flow reads batch inputs."""
    from ferry.data import to_onnx_inputs
    from ferry.scoring import OnnxScorer

    try:
        v = registry.get(version, model=model)
        schema = registry.schema(v)
        found = OnnxScorer(registry.read_bytes(v, "model.onnx")).answer(to_onnx_inputs(sample, schema))
        answered = sample.assign(**answer_columns(found, schema))
        record_batch_input(registry, model, answered, version=version, run=output_url)
    except (FerryError, OSError, ValueError) as exc:
        log.warning("could not keep the input sample for the monitor flow: %s", exc)


def _settings(settings: BatchSettings | None) -> BatchSettings:
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


class CheckElsewhere(Protocol):
    """A drift check made in another process (:class:`ferry.batch.drift_process.DriftProcess`)."""

    def finish(self, *, limit_s: float) -> tuple[Any, str]:
        """The check's summary, or None and why there is none, within ``limit_s`` seconds."""
        ...


def check_drift(
    output_url: str,
    registry_url: str,
    model: str,
    version: str,
    *,
    settings: BatchSettings | None = None,
    storage_options: dict[str, Any] | None = None,
    process: CheckElsewhere | None = None,
    partitions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Input drift of a run: the finished partitions' samples against the version's reference, with Evidently.

    Writes Evidently's report to ``drift/report.html`` (and its snapshot JSON) in the output, and this summary to
    ``drift/summary.json``. Never raises for a missing reference or a failing check: ``status`` is ``drifted``,
    ``no drift``, ``no reference``, ``no sample`` or ``failed``, ``detail``/``text`` say why, and ``columns``
    holds one row per feature (feature, method, score, threshold, drifted). A finished partition without a sample
    (its run's drift process died) gets one drawn from its input when it is among ``partitions``. With
    ``process``, the answer is that process's (see :class:`ferry.batch.drift_process.DriftProcess`); when it dies,
    hangs or fails, the summary says ``failed`` and why.
    """
    s = _settings(settings)
    started = time.perf_counter()
    out = OutputDir(output_url, storage_options=storage_options)
    if process is not None:
        answer, why = process.finish(limit_s=s.drift_timeout_s + _ANSWER_GRACE_S)
        if answer is not None:
            return dict(answer)
        d = _summary(s)
        _failed(d, why)
        log.warning("input drift: %s", d["detail"])
        return _write_summary(out, d, started)
    return _check(out, registry_url, model, version, s, partitions=partitions).summary


@dataclass
class _Check:
    summary: dict[str, Any]
    keys: list[str]  # the partitions whose samples it checked
    sample: pd.DataFrame | None


def _check(
    out: OutputDir,
    registry_url: str,
    model: str,
    version: str,
    s: BatchSettings,
    *,
    partitions: list[dict[str, Any]] | None = None,
    keys: list[str] | None = None,
    keep: bool = True,
) -> _Check:
    """The check itself, on the samples of ``keys`` (default: every partition in the manifest). ``keep``: record
    the sample for the monitor flow (a check made before scoring ends leaves that to :func:`_run`)."""
    started = time.perf_counter()
    d = _summary(s)
    used: list[str] = []
    sample = None
    try:
        registry = Registry(registry_url)
        v = registry.get(version, model=model)
        schema = registry.schema(v)
        keys = sorted(out.read_manifest()) if keys is None else sorted(keys)
        _draw_missing(out, schema, keys, partitions or [], s)
        used = [k for k in keys if out.fs.exists(out.drift_sample(k))]
        sample = _drift_sample(out, used, s.drift_max_rows)
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
            if keep:
                _keep_for_monitor(registry, v.model, v.id, sample, out.url)
            reference = pd.read_parquet(io.BytesIO(registry.read_bytes(v, "reference.parquet")))
            with tempfile.TemporaryDirectory(prefix="ferry-drift-") as tmp:
                html = Path(tmp) / "report.html"
                result = input_drift(
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
    return _Check(_write_summary(out, d, started), used, sample)


def _draw_missing(
    out: OutputDir, schema: Schema, keys: list[str], partitions: list[dict[str, Any]], s: BatchSettings
) -> None:
    known = {str(p["key"]): Partition.from_dict(p) for p in partitions}
    for key in keys:
        if key in known and not out.fs.exists(out.drift_sample(key)):
            _sample(known[key], out, schema, s)


def _sample(part: Partition, out: OutputDir, schema: Schema, s: BatchSettings) -> None:
    """Draw one partition's sample from its input; an input that cannot be read leaves none (scoring says why)."""
    try:
        sample_partition(
            part, out, schema, s.drift_sample_rows, batch_rows=s.batch_rows, storage_options=out.storage_options
        )
    except Exception as exc:
        log.warning("input drift: no sample of partition %s (%s)", part.key, exc)
        out.discard(out.drift_sample(part.key))
