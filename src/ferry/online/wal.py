"""A local write-ahead file, so that a log row the service acknowledged survives a kill -9 of the worker.

A durable log (feedback, telemetry) appends each accepted row here and fsyncs before the request is answered; the
row reaches a Parquet file in the registry later. One process writes its own *segments* in a local directory::

    <dir>/<YYYYmmddTHHMMSS>-<uuid12>.jsonl      one JSON row per line, held under an exclusive flock while open

A segment is *sealed* when its rows are taken for a Parquet file, and deleted once that file is written. A segment
that no live process holds (its writer died) is an orphan: the next service to start replays it into the registry.
Each Parquet file is named after the first segment it holds (:meth:`Segment.parquet_name`), so a replay after a
crash between "Parquet written" and "segment deleted" rewrites the same file instead of adding duplicates.

A line torn by a crash mid-write was never acknowledged (the answer follows the fsync), so replay skips it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ferry.errors import SealedObjectError
from ferry.storage import sealed

__all__ = ["Segment", "WriteAheadLog"]

log = logging.getLogger("ferry.online.wal")


class Segment:
    """One segment file, open for appending and held under an exclusive flock for as long as this object lives."""

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path = path
        self._handle = handle
        self.rows = 0

    @classmethod
    def create(cls, directory: Path) -> Segment:
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl"
        path = directory / name
        handle = open(path, "ab")  # noqa: SIM115 (held open for the segment's life)
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        _fsync_dir(directory)
        return cls(path, handle)

    @classmethod
    def claim(cls, path: Path) -> Segment | None:
        """The orphan at ``path``, now held by this process; None when a live process holds it or it is gone."""
        try:
            handle = open(path, "ab")  # noqa: SIM115
        except OSError:
            return None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        if not path.exists():  # deleted by its writer between listing and locking
            handle.close()
            return None
        return cls(path, handle)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write the rows and fsync them: when this returns, they survive a crash of the process."""
        data = b"".join(_line(row) for row in rows)
        self._handle.write(data)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.rows += len(rows)

    def read(self) -> list[dict[str, Any]]:
        """The rows written so far; a torn last line (a crash mid-write, never acknowledged) is skipped. A whole line
        that cannot be decrypted raises :class:`~ferry.errors.SealedObjectError` (acknowledged rows are never
        skipped)."""
        rows = []
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    row = json.loads(sealed.unseal_line(line, name=f"{self.path} line {number}"))
                except SealedObjectError:
                    if line.endswith(b"\n"):
                        raise
                    log.warning("skipped a torn line %d of %s (never acknowledged)", number, self.path)
                    continue
                except ValueError:
                    log.warning("skipped a torn line %d of %s (never acknowledged)", number, self.path)
                    continue
                if isinstance(row, dict):
                    rows.append(row)
        return rows

    def parquet_name(self) -> tuple[str, str]:
        """``(date directory, file name)`` of the Parquet file this segment's rows go to first."""
        stamp, _, rest = self.path.stem.partition("-")
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%S")
        except ValueError:
            when = datetime.now(UTC)
        return f"{when:%Y-%m-%d}", f"{when:%H%M%S}-{rest or uuid.uuid4().hex[:12]}.parquet"

    def delete(self) -> None:
        """Remove the file (its rows are in the registry now) and release it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()


class WriteAheadLog:
    """The segments of one durable log in ``directory``: the open one, and the sealed ones not yet in Parquet."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._open: Segment | None = None

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self._open is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._open = Segment.create(self.directory)
        self._open.append(rows)

    def seal(self) -> Segment | None:
        """The open segment, closed to new rows (the next append starts another); None when nothing is open."""
        segment, self._open = self._open, None
        return segment

    def close(self) -> None:
        """Release the open segment without writing it anywhere: the next process to start replays it."""
        segment, self._open = self._open, None
        if segment is not None:
            segment.close()

    def orphans(self) -> Iterator[Segment]:
        """Segments left by processes that died, each claimed by this process as it is yielded."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.jsonl")):
            if self._open is not None and path == self._open.path:
                continue
            segment = Segment.claim(path)
            if segment is not None:
                yield segment


def _line(row: Mapping[str, Any]) -> bytes:
    # ASCII escapes keep every line writable whatever text the row holds (the request edge refuses lone surrogates,
    # but the write-ahead file must never be the reason an acknowledged row is lost).
    # Encrypted at rest when a key is set: each line on its own (ferry.storage.sealed.seal_line).
    return sealed.seal_line(json.dumps(row, ensure_ascii=True, default=str).encode("ascii")) + b"\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
