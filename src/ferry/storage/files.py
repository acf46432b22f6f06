"""Files over fsspec: open a URL, check an object store answers, write atomically, publish a directory, read, hash.

The registry lives in a local directory by default and in any fsspec URL (``s3://``, ``gs://``, ``memory://``, ...)
at scale. These helpers hide the few places where local files and object stores behave differently:

- :func:`open_fs` turns a path or URL into ``(filesystem, root)``; every module opens storage through it. On object
  stores it turns off fsspec's listing cache (other processes write the same registry) and takes endpoint and
  credentials from the usual places: ``storage_options``, fsspec's ``FSSPEC_S3_*`` variables, and botocore's own
  (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``~/.aws/config``).
- :func:`check_reachable` asks an object store once whether the bucket is there and the credentials are good, so a
  mistake is one clear line instead of an empty registry.
- :func:`atomic_write` (and :func:`atomic_write_bytes`) writes to a temporary name in the same directory and renames
  it into place, so a reader sees either the old bytes or the new bytes, never half a file. Locally the data is
  fsynced first. :func:`atomic_write_sealed` is the same for an object that holds rows of data: encrypted at rest
  when a key is set (:mod:`ferry.storage.sealed`), and :func:`read_bytes` decrypts what it reads.
- :func:`link` turns a location into something a browser on another machine can open: a local path stays a path
  (as an absolute ``file://`` URI), an object-store URL becomes a presigned HTTPS URL valid for a given time.

Reads and writes on S3 retry with backoff inside botocore (throttling, 5xx, dropped connections; tune with
``AWS_RETRY_MODE``/``AWS_MAX_ATTEMPTS`` or ``config_kwargs`` in ``storage_options``) and s3fs (``retries``).
Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ferry.errors import DataFormatError, RegistryError
from ferry.storage import sealed

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_sealed",
    "check_reachable",
    "exists",
    "fsync_dir",
    "is_local",
    "local_fs",
    "open_fs",
    "portable_url",
    "publish_dir",
    "read_bytes",
    "read_raw",
    "sha256_bytes",
]

# Object stores whose listings other processes change under us: fsspec must not cache them.
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


def open_fs(url: str, storage_options: Mapping[str, Any] | None = None, *, data: bool = False) -> tuple[Any, str]:
    """Return ``(filesystem, root path)`` for a local path or fsspec URL.

    The root is in the filesystem's own form (an absolute path for local files, ``bucket/prefix`` for object
    stores). ``storage_options`` go to the filesystem constructor (credentials, endpoints, ...). A URL that cannot
    be opened raises :class:`~ferry.errors.RegistryError`, or :class:`~ferry.errors.DataFormatError` with
    ``data=True`` (an input or output of the user's, not the registry). Without ``storage_options``, a registry on an
    object store (``data=False``) is opened with ``FERRY_STORAGE_OPTIONS``, so every writer of the registry passes the
    same options (credentials, endpoint, server-side encryption such as s3fs's ``s3_additional_kwargs``).
    """
    if not url or not url.strip():
        if data:
            raise DataFormatError("the path or URL is empty; give a file, a directory or an fsspec URL")
        raise RegistryError("registry url is empty; set FERRY_REGISTRY_URL to a directory or an fsspec URL")
    protocol, _ = fsspec.core.split_protocol(url)
    if storage_options is None and not data and protocol in _OBJECT_STORES:
        from ferry.settings import StorageSettings

        storage_options = StorageSettings().storage_options
    options = dict(storage_options or {})
    if protocol in _OBJECT_STORES:
        options.setdefault("use_listings_cache", False)
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError) as exc:
        if data:
            raise DataFormatError(
                f"{url}: cannot open this URL ({exc}); check the protocol and storage_options"
            ) from None
        raise RegistryError(
            f"cannot open registry url {url!r}: {exc}; check the URL scheme and that its fsspec backend is installed"
        ) from exc
    return fs, str(root).rstrip("/") or "/"


def check_reachable(fs: Any, root: str, url: str, *, data: bool = False) -> None:
    """On an object store, one request for the bucket of ``root``: a one-line error naming ``url`` and what to do
    when the credentials are refused, the bucket is missing or the endpoint does not answer. A no-op elsewhere."""
    if not _OBJECT_STORES & set(_protocols(fs)):
        return
    error = DataFormatError if data else RegistryError
    bucket = root.split("/", 1)[0]
    try:
        fs.info(bucket)
    except PermissionError as exc:
        raise error(
            f"{url}: the object store refused these credentials ({_first_line(exc)}); set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or key and secret in FERRY_STORAGE_OPTIONS"
        ) from None
    except FileNotFoundError:
        raise error(
            f"{url}: bucket {bucket!r} does not exist; create it (e.g. `aws s3 mb s3://{bucket}`) or fix the URL"
        ) from None
    except OSError as exc:
        raise error(
            f"{url}: the object store did not answer ({_first_line(exc)}); check AWS_ENDPOINT_URL (or endpoint_url "
            f"in FERRY_STORAGE_OPTIONS) and the network"
        ) from None


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def local_fs() -> Any:
    """The local filesystem, for :func:`atomic_write` on plain paths."""
    return fsspec.filesystem("file")


def portable_url(url: str) -> str:
    """``url`` as a process started in another directory finds it: a local path made absolute, any other URL as is."""
    protocol, _ = fsspec.core.split_protocol(url)
    return open_fs(url)[1] if protocol in (None, "file", "local") else url


def is_local(fs: Any) -> bool:
    """True when ``fs`` is the local filesystem, where rename is atomic and ``flock`` works."""
    return isinstance(fs, LocalFileSystem)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_bytes(fs: Any, path: str) -> bytes:
    """The whole content of ``path``, decrypted when it is encrypted at rest (:func:`ferry.storage.sealed.unseal`:
    a :class:`~ferry.errors.SealedObjectError` naming ``path`` when it cannot be); raises ``FileNotFoundError``
    when it does not exist."""
    return sealed.unseal(read_raw(fs, path), name=path)


def read_raw(fs: Any, path: str) -> bytes:
    """The stored bytes of ``path`` as they are, encrypted or not."""
    return bytes(fs.cat_file(path))


def exists(fs: Any, path: str) -> bool:
    """True when ``path`` exists (file or directory)."""
    return bool(fs.exists(path))


def parent_path(path: str) -> str:
    """The directory part of a slash-separated ``path`` (``/`` at the top)."""
    head, _, _ = path.rstrip("/").rpartition("/")
    return head or "/"


def _basename(path: str) -> str:
    return path.rstrip("/").rpartition("/")[2]


def atomic_write(fs: Any, path: str, write: Callable[[BinaryIO], object], *, mode: int = 0o644) -> None:
    """Replace ``path`` with what ``write`` writes to a binary file, so that readers never see a partial file.

    ``write`` writes to a temporary name in the same directory, which is then renamed over ``path``. Locally the
    file is created with ``mode``, fsynced before ``os.replace`` and the directory after it, so the new content
    survives a crash. On object stores the "rename" is a copy plus delete; a single object upload is already
    all-or-nothing there, so readers still never see a torn file. The temporary file is removed when ``write``
    fails.
    """
    parent = parent_path(path)
    tmp = f"{parent}/.{_basename(path)}.{uuid.uuid4().hex}.tmp"
    if is_local(fs):
        os.makedirs(parent, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(parent)
        return
    fs.makedirs(parent, exist_ok=True)
    try:
        with fs.open(tmp, "wb") as fh:
            write(fh)
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(tmp)
        raise


def atomic_write_bytes(fs: Any, path: str, data: bytes, *, mode: int = 0o644) -> None:
    """:func:`atomic_write` of ``data``. On an object store, whose single upload of known bytes is already
    all-or-nothing (a failed PUT leaves the old object), this is that one upload instead of upload, copy, delete."""
    if is_local(fs) or not _OBJECT_STORES & set(_protocols(fs)):
        atomic_write(fs, path, lambda fh: fh.write(data), mode=mode)
        return
    fs.pipe_file(path, data)


def atomic_write_sealed(fs: Any, path: str, data: bytes, *, model: bool = False, mode: int = 0o644) -> None:
    """:func:`atomic_write_bytes` of an object that holds rows of data (or, with ``model=True``, a model artifact):
    encrypted at rest when ``FERRY_ENCRYPTION_KEY_FILE`` is set (:func:`ferry.storage.sealed.seal`)."""
    atomic_write_bytes(fs, path, sealed.seal(data, model=model), mode=mode)


def publish_dir(fs: Any, staging: str, final: str, names: list[str], *, marker: str) -> None:
    """Move the files ``names`` of a fully written ``staging`` directory to ``final``, which must not exist yet.

    Locally this is a single ``os.rename`` of the directory, so ``final`` appears complete or not at all; it fails
    with ``OSError`` when ``final`` already exists and is not empty. Object stores have no directory rename, so the
    files are moved one by one with ``marker`` (e.g. ``manifest.json``) last: readers must treat a directory
    without its marker as absent.
    """
    if is_local(fs):
        os.makedirs(parent_path(final), exist_ok=True)
        os.rename(staging, final)
        fsync_dir(parent_path(final))
        return
    fs.makedirs(final, exist_ok=True)
    for name in [n for n in names if n != marker] + [marker]:
        fs.mv(f"{staging}/{name}", f"{final}/{name}")


def fsync_dir(path: str) -> None:
    """fsync a local directory so that renames inside it are durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def link(location: str, storage_options: Mapping[str, Any] | None = None, *, expiry_s: int = 86_400) -> str:
    """A link to ``location`` for people: an absolute ``file://`` URI for a local path, the URL itself for
    ``http(s)://`` and ``file://``, and for an object store a presigned HTTPS URL valid ``expiry_s`` seconds (the
    store's own signing: SigV4 on S3, which every region accepts, up to 7 days). A store that cannot sign keeps its
    URL."""
    protocol, _ = fsspec.core.split_protocol(location)
    if protocol is None:
        return Path(location).resolve().as_uri()
    if protocol in ("http", "https", "file", "local"):
        return location
    options = dict(storage_options or {})
    if protocol in ("s3", "s3a"):
        options["config_kwargs"] = {"signature_version": "s3v4", **options.get("config_kwargs", {})}
    fs, path = open_fs(location, options)
    try:
        return str(fs.sign(path, expiration=int(expiry_s)))
    except NotImplementedError:
        return location
