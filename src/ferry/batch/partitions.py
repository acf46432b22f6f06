"""The input of a batch run: its partitions, found and streamed in record batches.

An input is one CSV or Parquet file, a directory (every such file below it, recursively) or a glob, on a local path
or any fsspec URL. Each file is one **partition**: it is read in record batches (never whole), and its output is one
Parquet file. ``<key>`` is the partition's path relative to the input root, with ``/`` replaced by ``__`` and the
suffix dropped, so it is stable across runs and unique within one input.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ferry import storage
from ferry.errors import DataFormatError
from ferry.schema import Schema

__all__ = ["Partition", "count_rows", "discover_partitions", "iter_batches", "schema_batches"]


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


def _full(fs: Any, path: str, like: str) -> str:
    """``path`` in the same form as the user's input: a plain path locally, a full URL elsewhere."""
    return path if "://" not in like else str(fs.unstrip_protocol(path))


def discover_partitions(url: str, *, storage_options: dict[str, Any] | None = None) -> list[Partition]:
    """The partitions of ``url`` (a file, a directory or a glob), sorted by key; DataFormatError when there are none.

    In a directory, files whose names start with ``.`` or ``_`` are skipped (temp files, markers), as are files
    that are neither CSV nor Parquet.
    """
    fs, path = storage.open_fs(url, storage_options, data=True)
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
    fs, path = storage.open_fs(part.url, storage_options, data=True)
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
    fs, path = storage.open_fs(part.url, storage_options, data=True)
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


def schema_batches(
    part: Partition, schema: Schema, batch_rows: int, storage_options: dict[str, Any] | None
) -> Generator[pa.RecordBatch, None, None]:
    """The partition's record batches, with the columns scoring reads (text features dictionary-encoded)."""
    wanted = [c for c in (schema.id, schema.timestamp) if c is not None] + list(schema.feature_names)
    yield from iter_batches(
        part,
        batch_rows=batch_rows,
        columns=wanted,
        dictionary=list(schema.feature_names),
        storage_options=storage_options,
    )


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
