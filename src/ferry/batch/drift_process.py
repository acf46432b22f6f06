"""The drift check of a batch run in a second process, started when the run starts.

It draws the samples from the input and checks them while the partitions score, so importing Evidently (about 5 s
of CPU) and the check itself overlap scoring on another core instead of following it. A process that dies or hangs
costs the check (``failed``, with the reason), never the scores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ferry.batch.drift import _check, _keep_for_monitor, _sample
from ferry.batch.output import OutputDir
from ferry.batch.partitions import Partition
from ferry.batch.settings import BatchSettings
from ferry.gate.evidently_adapter import import_evidently
from ferry.registry.store import Registry

__all__ = ["DriftProcess", "drift_process"]


log = logging.getLogger("ferry.batch")


_EXIT_WAIT_S = 5.0  # for the drift process to stop once told to


# What the drift process runs: the ferry package it is started from comes first on its path.
_CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from ferry.batch.drift_process import _serve; _serve()"


def _serve() -> None:
    """The drift process: read the run's plan from stdin; draw the pending partitions' samples from the input, import
    Evidently and check; then, told that scoring ended, answer on stdout (checking again only when the samples the
    run finished with are not those it checked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the scoring process, which stops this one
    if hasattr(os, "nice"):
        os.nice(10)  # scoring keeps its cores and this process takes what is left (measured: as fast or faster)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the check prints goes to stderr, not into the answer
    try:
        job = pickle.load(sys.stdin.buffer)
    except EOFError:  # the run ended before it began
        return
    try:
        answer: tuple[str, Any] = ("done", _run(job))
    except Exception as exc:  # anything the check lets through is still only a failed check
        answer = ("failed", f"{type(exc).__name__}: {exc}")
    if answer[1] is None:  # the run ended without asking
        return
    pickle.dump(answer, answers)
    answers.flush()
    sys.stderr.flush()
    os._exit(0)  # not waiting for an Evidently thread that outlived its time limit


def _run(job: dict[str, Any]) -> dict[str, Any] | None:
    output_url, registry_url, model, version = job["refs"]
    s: BatchSettings = job["settings"]
    out = OutputDir(output_url, storage_options=job["storage_options"])
    registry = Registry(registry_url)
    v = registry.get(version, model=model)
    schema = registry.schema(v)
    pending = [Partition.from_dict(p) for p in job["pending"]]
    for part in pending:  # drawn afresh: an earlier attempt's sample may be stale
        _sample(part, out, schema, s)
    import_evidently()
    keys = sorted(set(out.read_manifest()) | {p.key for p in pending})
    early = _check(out, registry_url, model, version, s, partitions=job["partitions"], keys=keys, keep=False)
    try:
        pickle.load(sys.stdin.buffer)  # scoring ended
    except EOFError:
        return None
    finished = sorted(out.read_manifest())
    if [k for k in finished if out.fs.exists(out.drift_sample(k))] != early.keys:  # a partition failed meanwhile
        return _check(out, registry_url, model, version, s, partitions=job["partitions"]).summary
    if early.sample is not None and early.summary["status"] in ("drifted", "no drift"):
        _keep_for_monitor(registry, model, version, early.sample, output_url)
    return early.summary


class DriftProcess:
    """A Python process that checks a run's input drift while its partitions score.

    A run starts it first and hands it the plan (:meth:`begin`). It draws the pending partitions' samples from the
    input (:func:`ferry.batch.sample_partition`, the rows scoring would keep), imports Evidently (about 5 s of CPU)
    and checks, all on another core while scoring runs. When scoring ends, ``check_drift(..., process=...)`` asks
    for its answer (:meth:`finish`). It is a plain subprocess of this interpreter, not a multiprocessing one: it
    never imports the caller's main module. Always :meth:`close` it (or use it as a context manager): that stops
    the process however the run ends.
    """

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, package_root], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._refused = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def begin(
        self,
        refs: tuple[str, str, str, str],
        *,
        settings: BatchSettings,
        storage_options: dict[str, Any] | None,
        pending: list[Partition],
        partitions: list[dict[str, Any]],
    ) -> None:
        """Hand over the run: (output, registry, model, version), its settings and its partitions."""
        job = {
            "refs": refs,
            "settings": settings,
            "storage_options": storage_options,
            "pending": [p.to_dict() for p in pending],
            "partitions": partitions,
        }
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(pickle.dumps(job))
            self.process.stdin.flush()
        except Exception as exc:  # e.g. storage options that cannot be sent, or a process already gone
            self._refused = f"{type(exc).__name__}: {exc}"

    def finish(self, *, limit_s: float) -> tuple[Any, str]:
        """Tell the process that scoring ended: its answer, or None and why there is none."""
        if self._refused:
            return None, self._refused
        try:
            out, _ = self.process.communicate(pickle.dumps({"finished": True}), timeout=limit_s)
        except subprocess.TimeoutExpired:
            return None, f"its process did not answer within {limit_s:g} s"
        except Exception as exc:  # e.g. a process gone before it read what it was sent
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
