"""Files of a batch-scoring run: finding the input partitions, streaming them, and writing outputs atomically.

An input is one CSV or Parquet file, a directory (every such file below it, recursively) or a glob, on a local path
or any fsspec URL. Each file is one **partition**: it is read in record batches (never whole), and its output is one
Parquet file. The output directory holds::

    scores/<key>.parquet       id, prediction, prob_<class>..., model_version, scored_at
    rejects/<key>.parquet      rows that broke the schema: row, id, column, rule, reason (only when there are any)
    _manifest/<key>.json       one record per finished partition; a rerun skips the partitions recorded here
    _drift/<key>.parquet       a random sample of the partition's good rows (features only), for the drift check
    drift/report.html          the run's Evidently input-drift report (+ report.evidently.json, summary.json)
    _tmp/                      files being written; renamed into place when complete
    _lock                      held by the run writing the output (who: pid, host, since, command)

``<key>`` is the partition's path relative to the input root, with ``/`` replaced by ``__`` and the suffix dropped,
so it is stable across runs and unique within one input.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import re
import socket
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ferry import storage
from ferry.errors import DataFormatError, FerryError

__all__ = [
    "OutputDir",
    "OutputLocked",
    "Partition",
    "WriteBehind",
    "discover_partitions",
    "iter_batches",
    "output_lock",
    "prefetch",
]

T = TypeVar("T")

_CSV_SUFFIXES = (".csv.gz", ".csv")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_GLOB_CHARS = re.compile(r"[*?\[]")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]")


@dataclass(frozen=True)
class Partition:
    """One input file: where it is, its format, its stable key and its size in bytes. Plain data (picklable)."""

    url: str
    key: str
    format: str  # "parquet" or "csv"
    size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Partition:
        return cls(url=str(raw["url"]), key=str(raw["key"]), format=str(raw["format"]), size=int(raw["size"]))


def _format_of(path: str) -> str | None:
    name = path.lower()
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    return None


def _key(relative: str) -> str:
    stem = relative
    for suffix in (*_CSV_SUFFIXES, *_PARQUET_SUFFIXES):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return _KEY_UNSAFE.sub("_", stem.strip("/").replace("/", "__")) or "part"


def _open_fs(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise DataFormatError(f"{url}: cannot open this URL ({exc}); check the protocol and storage_options") from None
    return fs, str(path)


def _full(fs: Any, path: str, like: str) -> str:
    """``path`` in the same form as the user's input: a plain path locally, a full URL elsewhere."""
    return path if "://" not in like else str(fs.unstrip_protocol(path))


def discover_partitions(url: str, *, storage_options: dict[str, Any] | None = None) -> list[Partition]:
    """The partitions of ``url`` (a file, a directory or a glob), sorted by key; DataFormatError when there are none.

    In a directory, files whose names start with ``.`` or ``_`` are skipped (temp files, markers), as are files
    that are neither CSV nor Parquet.
    """
    fs, path = _open_fs(url, storage_options)
    if _GLOB_CHARS.search(path):
        root = _GLOB_CHARS.split(path, 1)[0].rpartition("/")[0]
        found = [p for p in sorted(fs.glob(path)) if not fs.isdir(p)]
        if not found:
            raise DataFormatError(f"{url}: the pattern matches no files; check the path or URL")
    elif not fs.exists(path):
        raise DataFormatError(f"{url}: not found; check the path or URL")
    elif fs.isdir(path):
        root = path.rstrip("/")
        found = sorted(
            p
            for p in fs.find(path)
            if not any(part.startswith((".", "_")) for part in p[len(root) :].split("/") if part)
        )
    else:
        root = path.rpartition("/")[0]
        found = [path]
    parts: list[Partition] = []
    skipped: list[str] = []
    for p in found:
        fmt = _format_of(p)
        if fmt is None:
            skipped.append(p.rpartition("/")[2])
            continue
        relative = p[len(root) :] if root and p.startswith(root) else p.rpartition("/")[2]
        parts.append(Partition(url=_full(fs, p, url), key=_key(relative), format=fmt, size=int(fs.size(p))))
    if not parts:
        extra = f" (skipped {', '.join(skipped[:5])})" if skipped else ""
        raise DataFormatError(f"{url}: holds no CSV or Parquet files{extra}; name them .csv, .csv.gz, .parquet or .pq")
    keys = [p.key for p in parts]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise DataFormatError(f"{url}: several files map to the same partition key {dupes}; rename one of them")
    return sorted(parts, key=lambda p: p.key)


def count_rows(part: Partition, *, storage_options: dict[str, Any] | None = None) -> int | None:
    """Rows of a Parquet partition from its footer (cheap); None for CSV or when the footer cannot be read."""
    if part.format != "parquet":
        return None
    fs, path = _open_fs(part.url, storage_options)
    try:
        with fs.open(path, "rb") as fh:
            return int(pq.ParquetFile(fh).metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError):
        return None


def iter_batches(
    part: Partition,
    *,
    batch_rows: int,
    columns: list[str] | None = None,
    dictionary: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of one partition, at most ``batch_rows`` rows each, read with one thread.

    ``columns`` limits reading to those columns (the ones the schema uses); names the file lacks are left out, so
    validation reports them as missing. Parquet text columns named in ``dictionary`` are read dictionary-encoded
    (as Parquet stores them), so rules and encodings run once per distinct value rather than once per row.

    CSV columns are read as text and typed by validation (so a stray word in a numeric column rejects that row
    rather than the whole file). Every way the file can be unreadable becomes a DataFormatError naming it.
    """
    fs, path = _open_fs(part.url, storage_options)
    try:
        if part.format == "parquet":
            with fs.open(path, "rb") as fh:
                reader = pq.ParquetFile(fh)
                names = reader.schema_arrow.names
                as_dictionary = [c for c in dictionary or [] if c in set(names)]
                if as_dictionary:
                    reader = pq.ParquetFile(fh, metadata=reader.metadata, read_dictionary=as_dictionary)
                wanted = None if columns is None else [c for c in names if c in set(columns)]
                yield from reader.iter_batches(batch_size=batch_rows, columns=wanted, use_threads=False)
        else:
            yield from _csv_batches(fs, path, batch_rows, columns)
    except DataFormatError:
        raise
    except (pa.ArrowException, OSError, ValueError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise DataFormatError(
            f"{part.url}: cannot read this {part.format} partition ({exc}); it is corrupt or truncated, write it again"
        ) from None


def _csv_batches(fs: Any, path: str, batch_rows: int, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    # The header is read through its own handle first, so every column can be declared as text. (Sharing one handle
    # and seeking back raced with the probe reader's read-ahead.)
    with fs.open(path, "rb", compression="infer") as fh:
        probe = pacsv.open_csv(fh, read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 16))
        names = [c for c in probe.schema.names if columns is None or c in set(columns)]
        probe.close()
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        include_columns=names,
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    with fs.open(path, "rb", compression="infer") as fh:
        reader = pacsv.open_csv(
            fh, read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 22), convert_options=convert
        )
        for batch in reader:
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows)


class OutputDir:
    """The output location of a run (local path or fsspec URL) and its atomic writes."""

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        fs, root = _open_fs(url, storage_options)
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
        """The commit point of a partition: written to a temp name, then renamed."""
        tmp = self.path("_tmp", f"{key}.manifest.{uuid.uuid4().hex}.json")
        with self.fs.open(tmp, "wb") as fh:
            fh.write((json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
        self.fs.mv(tmp, self.manifest(key))


# ---------------------------------------------------------------------------------------------------- the lock


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


def _holder() -> dict[str, Any]:
    return {**storage.lock_owner(), "command": " ".join(sys.argv)[:300]}


def _read_holder(fs: Any, path: str) -> dict[str, Any] | None:
    for _ in range(20):  # the holder writes its record just after taking the lock: give it a moment
        try:
            raw = fs.cat_file(path)
            if raw:
                found = json.loads(raw)
                return found if isinstance(found, dict) else None
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            pass
        time.sleep(0.025)
    return None


def _gone(holder: dict[str, Any] | None) -> bool:
    """True when the holder ran on this machine and its process no longer exists (a crashed run's lock)."""
    if not holder or holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextlib.contextmanager
def output_lock(out: OutputDir) -> Generator[dict[str, Any], None, None]:
    """Hold ``out``'s ``_lock`` for a whole run; :class:`OutputLocked` at once when another run holds it.

    Locally the lock is an ``fcntl.flock`` on ``_lock`` (the kernel drops it when its holder dies, so a killed run
    never blocks the next one) and the file records who holds it. Elsewhere ``_lock`` is an object created in
    exclusive-create mode and deleted on release; one left by a crashed run on this machine (its pid is gone) is
    taken over, otherwise the error names it so an operator can delete it.
    """
    path = out.path("_lock")
    me = _holder()
    payload = json.dumps(me, sort_keys=True).encode()
    out.fs.makedirs(out.root, exist_ok=True)
    if storage.is_local(out.fs):
        import fcntl

        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputLocked(out.location(), out.location("_lock"), _read_holder(out.fs, path)) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, payload, 0)
            try:
                yield me
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    for attempt in range(2):
        if _create_exclusive(out.fs, path, payload):
            break
        holder = _read_holder(out.fs, path)
        if attempt == 0 and _gone(holder):
            with contextlib.suppress(FileNotFoundError):
                out.fs.rm(path)
            continue
        raise OutputLocked(out.location(), out.location("_lock"), holder)
    try:
        yield me
    finally:
        with contextlib.suppress(FileNotFoundError):
            if out.fs.cat_file(path) == payload:
                out.fs.rm(path)


def _create_exclusive(fs: Any, path: str, payload: bytes) -> bool:
    try:
        with fs.open(path, "xb") as fh:
            fh.write(payload)
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError):  # no exclusive-create mode here: check, then create
        if fs.exists(path):
            return False
        fs.pipe_file(path, payload)
    try:
        return bool(fs.cat_file(path) == payload)
    except FileNotFoundError:
        return False


_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class WriteBehind:
    """Runs writes in one background thread, in the order they were submitted, at most ``depth`` behind.

    The caller's thread then scores the next record batch while the previous one is encoded and written (Parquet
    encoding and file writes release the GIL). A failed write is re-raised by the next :meth:`submit` or by
    :meth:`drain`. With ``threaded=False`` every write runs at once, in the caller's thread.
    """

    def __init__(self, *, depth: int = 2, threaded: bool = True) -> None:
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferry-write") if threaded else None
        self._pending: collections.deque[Future[None]] = collections.deque()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self._pool is None:
            fn(*args)
            return
        self._pending.append(self._pool.submit(fn, *args))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def drain(self) -> None:
        """Wait for every submitted write; re-raise the first failure."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Drop writes not yet started and wait for the running one (after a failure elsewhere)."""
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def prefetch(items: Iterator[T], *, depth: int = 2) -> Generator[T, None, None]:
    """Yield ``items`` while a background thread computes up to ``depth`` of them ahead.

    Work that releases the GIL in the consumer (onnxruntime, Parquet writes) then overlaps with the producer's.
    The producer's exceptions are re-raised here, in order; closing this generator stops the producer.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:
            put(_Raised(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="ferry-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()
