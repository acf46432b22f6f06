"""The output of a batch run: its directory, its atomic writes and the lock that keeps two runs out of it.

The output directory holds::

    scores/<key>.parquet       id, prediction, prob_<class>..., model_version, scored_at
    rejects/<key>.parquet      rows that broke the schema: row, id, column, rule, reason (only when there are any)
    _manifest/<key>.json       one record per finished partition; a rerun skips the partitions recorded here
    _drift/<key>.parquet       a random sample of the partition's good rows (features only), for the drift check
    drift/report.html          the run's Evidently input-drift report (+ report.evidently.json, summary.json)
    _tmp/                      files being written; renamed into place when complete
    _lock                      held by the run writing the output (who: pid, host, since, command)
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from collections.abc import Generator
from typing import Any

from ferry import storage
from ferry.batch.partitions import _full
from ferry.errors import DataFormatError, FerryError, LockTimeout

__all__ = ["OutputDir", "OutputLocked", "output_lock"]

_LOCK_TRY_S = 1.0  # a run never waits for another: the lock is tried once


class OutputDir:
    """The output location of a run (local path or fsspec URL) and its atomic writes."""

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        fs, root = storage.open_fs(url, storage_options, data=True)
        self.fs = fs
        self.root = root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def location(self, *parts: str) -> str:
        """A user-facing location: a local path, or a full URL."""
        return _full(self.fs, self.path(*parts), self.url)

    def scores(self, key: str) -> str:
        return self.path("scores", f"{key}.parquet")

    def rejects(self, key: str) -> str:
        return self.path("rejects", f"{key}.parquet")

    def manifest(self, key: str) -> str:
        return self.path("_manifest", f"{key}.json")

    def drift_sample(self, key: str) -> str:
        return self.path("_drift", f"{key}.parquet")

    def tmp(self, key: str, what: str) -> str:
        return self.path("_tmp", f"{key}.{what}.{uuid.uuid4().hex}.parquet")

    def prepare(self) -> None:
        for sub in ("scores", "rejects", "_manifest", "_drift", "drift", "_tmp"):
            self.fs.makedirs(self.path(sub), exist_ok=True)

    def clear_tmp(self) -> None:
        """Remove files a crashed run left in ``_tmp`` (call it before any partition of a new run starts)."""
        with contextlib.suppress(FileNotFoundError):
            for p in self.fs.ls(self.path("_tmp"), detail=False):
                self.fs.rm(p)

    def publish(self, tmp: str, final: str) -> None:
        """Rename a complete temp file into place (atomic on a local disk, copy-then-delete on object stores)."""
        self.fs.mv(tmp, final)

    def discard(self, *paths: str) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                if self.fs.exists(p):
                    self.fs.rm(p)

    def read_manifest(self) -> dict[str, dict[str, Any]]:
        """Every finished partition's record, by key."""
        out: dict[str, dict[str, Any]] = {}
        try:
            names = self.fs.ls(self.path("_manifest"), detail=False)
        except FileNotFoundError:
            return out
        for p in sorted(names):
            if not str(p).endswith(".json"):
                continue
            with self.fs.open(p, "rb") as fh:
                try:
                    record = json.loads(fh.read())
                except ValueError as exc:
                    raise DataFormatError(
                        f"{self.location('_manifest')}: record {p} is not valid JSON ({exc}); delete it to redo "
                        "that partition"
                    ) from None
            out[str(record["partition"])] = record
        return out

    def write_manifest(self, key: str, record: dict[str, Any]) -> None:
        """The commit point of a partition: written atomically (:func:`ferry.storage.atomic_write_bytes`)."""
        data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        storage.atomic_write_bytes(self.fs, self.manifest(key), data)


class OutputLocked(FerryError, RuntimeError):
    """Another run is writing the same output; ``holder`` says who (pid, host, since, command) when known."""

    def __init__(self, output: str, lock: str, holder: dict[str, Any] | None) -> None:
        self.output, self.lock, self.holder = output, lock, holder
        if holder:
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}, running "
                f"{holder.get('command')!r}"
            )
        else:
            who = "a run that has not said who it is yet"
        super().__init__(
            f"output {output} is being written by another run ({who}); two runs must not write one output at "
            f"once. Wait for it to finish and run the same command again (finished partitions are skipped), or "
            f"write to another output. If that run is gone, delete {lock}"
        )


@contextlib.contextmanager
def output_lock(out: OutputDir) -> Generator[dict[str, Any], None, None]:
    """Hold ``out``'s ``_lock`` for a whole run; :class:`OutputLocked` at once when another run holds it.

    The lock is :func:`ferry.storage.lock` on ``_lock``, tried once, recording who holds it (with the command).
    Locally the kernel drops it when its holder dies, so a killed run never blocks the next one; elsewhere one left
    by a crashed run on this machine is taken over, and any other one is named so an operator can delete it.
    """
    out.fs.makedirs(out.root, exist_ok=True)
    owner = storage.lock_owner(command=" ".join(sys.argv)[:300])
    held = contextlib.ExitStack()
    try:
        me = held.enter_context(storage.lock(out.fs, out.path("_lock"), _LOCK_TRY_S, wait=False, owner=owner))
    except LockTimeout as exc:
        raise OutputLocked(out.location(), out.location("_lock"), exc.holder) from None
    with held:
        yield me
