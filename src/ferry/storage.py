"""Small helpers over fsspec: open a URL, write atomically, read, hash, and lock.

The registry lives in a local directory by default and in any fsspec URL (``s3://``, ``gs://``, ``memory://``, ...)
at scale. These helpers hide the few places where local files and object stores behave differently:

- :func:`atomic_write_bytes` writes to a temporary name in the same directory and renames it into place, so a
  reader sees either the old bytes or the new bytes, never half a file. Locally the data is fsynced first.
- :func:`lock` serialises writers of one model. Locally it is an ``fcntl.flock`` on a lock file, which the kernel
  releases if the holder dies. Elsewhere it is a lock object created with exclusive-create semantics (see its
  docstring for the limits of that).

Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ferry.errors import LockTimeout, RegistryError

__all__ = [
    "atomic_write_bytes",
    "exists",
    "fsync_dir",
    "is_local",
    "lock",
    "open_fs",
    "publish_dir",
    "read_bytes",
    "sha256_bytes",
]

# Threads of one process share these so that, on filesystems where exclusive-create is not atomic, two threads
# of the same process still never hold the same lock object at once. Creating an empty dict starts nothing.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()

_POLL_MIN_S = 0.005
_POLL_MAX_S = 0.01


def open_fs(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """Return ``(filesystem, root path)`` for a local path or fsspec URL.

    The root is in the filesystem's own form (an absolute path for local files, ``bucket/prefix`` for object
    stores). ``storage_options`` go to the filesystem constructor (credentials, endpoints, ...).
    """
    if not url or not url.strip():
        raise RegistryError("registry url is empty; set FERRY_REGISTRY_URL to a directory or an fsspec URL")
    try:
        fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise RegistryError(
            f"cannot open registry url {url!r}: {exc}; check the URL scheme and that its fsspec backend is installed"
        ) from exc
    return fs, str(root).rstrip("/") or "/"


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
    """The whole content of ``path``; raises ``FileNotFoundError`` when it does not exist."""
    data = fs.cat_file(path)
    return bytes(data)


def exists(fs: Any, path: str) -> bool:
    """True when ``path`` exists (file or directory)."""
    return bool(fs.exists(path))


def _parent(path: str) -> str:
    head, _, _ = path.rstrip("/").rpartition("/")
    return head or "/"


def _basename(path: str) -> str:
    return path.rstrip("/").rpartition("/")[2]


def atomic_write_bytes(fs: Any, path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers never see a partial file.

    The bytes go to a temporary name in the same directory first and are then renamed over ``path``. Locally the
    file is fsynced before ``os.replace`` and the directory after it, so the new content survives a crash. On object
    stores the "rename" is a copy plus delete; a single object upload is already all-or-nothing there, so readers
    still never see a torn file.
    """
    parent = _parent(path)
    tmp = f"{parent}/.{_basename(path)}.{uuid.uuid4().hex}.tmp"
    if is_local(fs):
        os.makedirs(parent, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
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
    fs.pipe_file(tmp, data)
    try:
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(tmp)
        raise


def publish_dir(fs: Any, staging: str, final: str, names: list[str], *, marker: str) -> None:
    """Move the files ``names`` of a fully written ``staging`` directory to ``final``, which must not exist yet.

    Locally this is a single ``os.rename`` of the directory, so ``final`` appears complete or not at all; it fails
    with ``OSError`` when ``final`` already exists and is not empty. Object stores have no directory rename, so the
    files are moved one by one with ``marker`` (e.g. ``manifest.json``) last: readers must treat a directory
    without its marker as absent.
    """
    if is_local(fs):
        os.makedirs(_parent(final), exist_ok=True)
        os.rename(staging, final)
        fsync_dir(_parent(final))
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


def _thread_lock(key: str) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


@contextlib.contextmanager
def lock(fs: Any, path: str, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive lock named by ``path`` for the duration of the ``with`` block.

    Waits up to ``timeout_s`` seconds, then raises :class:`~ferry.errors.LockTimeout` naming the lock path.

    - **Local filesystem**: ``fcntl.flock`` on ``path`` (created if missing, never deleted). This serialises
      processes and threads on one machine, and the kernel drops the lock when its holder dies, so a crash never
      leaves a stale lock. It does not work across machines on network filesystems that do not honour ``flock``.
    - **Other filesystems**: the lock is an object at ``path`` created in exclusive-create (``"xb"``) mode, read
      back to confirm it holds our token, and deleted on release. It is only as atomic as the backend's ``"xb"``:
      ``memory://`` honours it, and so do object-store drivers that map it to a conditional write (If-None-Match);
      where a driver lacks it, a check-then-create is used, which leaves a small race window between *machines*
      (threads of one process are always serialised here). A holder that dies leaves the lock object behind: the
      timeout message names it and who took it, so an operator can delete it once sure no promotion is running.
    """
    if timeout_s <= 0:
        raise RegistryError(f"lock timeout must be positive, got {timeout_s!r}; set FERRY_LOCK_TIMEOUT_S")
    if is_local(fs):
        with _flock(path, timeout_s):
            yield
        return
    key = f"{fs.protocol!r}:{path}"
    guard = _thread_lock(key)
    if not guard.acquire(timeout=timeout_s):
        raise LockTimeout(_timeout_message(path, timeout_s, holder="another thread of this process"))
    try:
        with _object_lock(fs, path, timeout_s):
            yield
    finally:
        guard.release()


def _timeout_message(path: str, timeout_s: float, holder: str | None) -> str:
    who = f" (held by {holder})" if holder else ""
    return (
        f"could not take the registry lock {path!r} within {timeout_s:g}s{who}; another promotion is running. "
        f"Retry later, or raise FERRY_LOCK_TIMEOUT_S"
    )


@contextlib.contextmanager
def _flock(path: str, timeout_s: float) -> Iterator[None]:
    os.makedirs(_parent(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        delay = _POLL_MIN_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(_timeout_message(path, timeout_s, holder=None)) from None
                time.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_owner() -> dict[str, Any]:
    """Who takes a lock: a fresh token, host, pid and time (recorded in the lock, named when it blocks others)."""
    return {
        "token": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _try_create(fs: Any, path: str, payload: bytes) -> bool:
    """Create ``path`` only if it does not exist; False when someone else holds it."""
    try:
        with fs.open(path, "xb") as fh:
            fh.write(payload)
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError):
        # The backend has no exclusive-create mode: check, then create.
        if fs.exists(path):
            return False
        fs.pipe_file(path, payload)
    # Read back: a backend that silently treats "xb" like "wb" lets a later writer overwrite us; then we lost.
    try:
        return bytes(fs.cat_file(path)) == payload
    except FileNotFoundError:
        return False


def _describe_holder(fs: Any, path: str) -> str | None:
    try:
        info = json.loads(fs.cat_file(path))
        return f"pid {info['pid']} on {info['host']} since {info['since']}; delete {path!r} if that process is gone"
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def _object_lock(fs: Any, path: str, timeout_s: float) -> Iterator[None]:
    fs.makedirs(_parent(path), exist_ok=True)
    payload = json.dumps(lock_owner(), sort_keys=True).encode()
    deadline = time.monotonic() + timeout_s
    delay = _POLL_MIN_S
    while not _try_create(fs, path, payload):
        if time.monotonic() >= deadline:
            raise LockTimeout(_timeout_message(path, timeout_s, holder=_describe_holder(fs, path)))
        time.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_S)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path)
