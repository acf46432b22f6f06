"""Storage over fsspec: open a URL, write atomically, read, hash, and lock; the one place for each.

The registry lives in a local directory by default and in any fsspec URL (``s3://``, ``gs://``, ``memory://``, ...)
at scale. These helpers hide the few places where local files and object stores behave differently:

- :func:`open_fs` turns a path or URL into ``(filesystem, root)``; every module opens storage through it.
- :func:`atomic_write` (and :func:`atomic_write_bytes`) writes to a temporary name in the same directory and renames
  it into place, so a reader sees either the old bytes or the new bytes, never half a file. Locally the data is
  fsynced first.
- :func:`lock` holds an exclusive lock named by a path: the registry's per-model lock (waits) and a batch output's
  lock (fails at once) are both this one. Locally it is an ``fcntl.flock`` on a lock file, which the kernel releases
  if the holder dies. Elsewhere it is a lock object created with exclusive-create semantics (see its docstring for
  the limits of that). Either way the lock records who holds it, so a refusal can name the holder.

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
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ferry.errors import DataFormatError, LockTimeout, RegistryError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "exists",
    "fsync_dir",
    "is_local",
    "local_fs",
    "lock",
    "lock_owner",
    "open_fs",
    "publish_dir",
    "read_bytes",
    "read_holder",
    "sha256_bytes",
]

# Threads of one process share these so that, on filesystems where exclusive-create is not atomic, two threads
# of the same process still never hold the same lock object at once. Creating an empty dict starts nothing.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()

_POLL_MIN_S = 0.005
_POLL_MAX_S = 0.01


def open_fs(url: str, storage_options: Mapping[str, Any] | None = None, *, data: bool = False) -> tuple[Any, str]:
    """Return ``(filesystem, root path)`` for a local path or fsspec URL.

    The root is in the filesystem's own form (an absolute path for local files, ``bucket/prefix`` for object
    stores). ``storage_options`` go to the filesystem constructor (credentials, endpoints, ...). A URL that cannot
    be opened raises :class:`~ferry.errors.RegistryError`, or :class:`~ferry.errors.DataFormatError` with
    ``data=True`` (an input or output of the user's, not the registry).
    """
    if not url or not url.strip():
        if data:
            raise DataFormatError("the path or URL is empty; give a file, a directory or an fsspec URL")
        raise RegistryError("registry url is empty; set FERRY_REGISTRY_URL to a directory or an fsspec URL")
    try:
        fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except (ImportError, ValueError) as exc:
        if data:
            raise DataFormatError(
                f"{url}: cannot open this URL ({exc}); check the protocol and storage_options"
            ) from None
        raise RegistryError(
            f"cannot open registry url {url!r}: {exc}; check the URL scheme and that its fsspec backend is installed"
        ) from exc
    return fs, str(root).rstrip("/") or "/"


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


def atomic_write(fs: Any, path: str, write: Callable[[BinaryIO], object], *, mode: int = 0o644) -> None:
    """Replace ``path`` with what ``write`` writes to a binary file, so that readers never see a partial file.

    ``write`` writes to a temporary name in the same directory, which is then renamed over ``path``. Locally the
    file is created with ``mode``, fsynced before ``os.replace`` and the directory after it, so the new content
    survives a crash. On object stores the "rename" is a copy plus delete; a single object upload is already
    all-or-nothing there, so readers still never see a torn file. The temporary file is removed when ``write``
    fails.
    """
    parent = _parent(path)
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
    """:func:`atomic_write` of ``data``."""
    atomic_write(fs, path, lambda fh: fh.write(data), mode=mode)


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


def lock_owner(**extra: Any) -> dict[str, Any]:
    """Who takes a lock: a fresh token, host, pid and time, plus ``extra`` (recorded in the lock, named to others)."""
    return {
        "token": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


@contextlib.contextmanager
def lock(
    fs: Any, path: str, timeout_s: float, *, wait: bool = True, owner: Mapping[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Hold an exclusive lock named by ``path`` for the duration of the ``with`` block; yields the owner record.

    Waits up to ``timeout_s`` seconds (``wait=False``: tries once), then raises :class:`~ferry.errors.LockTimeout`
    naming the lock path, with the holder's record as ``holder`` when it can be read. ``owner`` (default
    :func:`lock_owner`) is written into the lock while it is held.

    - **Local filesystem**: ``fcntl.flock`` on ``path`` (created if missing, never deleted; emptied on release). This
      serialises processes and threads on one machine, and the kernel drops the lock when its holder dies, so a
      crash never leaves a stale lock. It does not work across machines on network filesystems that do not honour
      ``flock``.
    - **Other filesystems**: the lock is an object at ``path`` created in exclusive-create (``"xb"``) mode, read
      back to confirm it holds our token, and deleted on release. It is only as atomic as the backend's ``"xb"``:
      ``memory://`` honours it, and so do object-store drivers that map it to a conditional write (If-None-Match);
      where a driver lacks it, a check-then-create is used, which leaves a small race window between *machines*
      (threads of one process are always serialised here). A lock object whose holder ran on this machine and is
      gone is taken over; any other one left behind blocks until someone deletes it: the timeout message names it
      and who took it, so an operator can delete it once sure its holder is gone.
    """
    if timeout_s <= 0:
        raise RegistryError(f"lock timeout must be positive, got {timeout_s!r}; set FERRY_LOCK_TIMEOUT_S")
    me = dict(owner) if owner is not None else lock_owner()
    payload = json.dumps(me, sort_keys=True).encode()
    if is_local(fs):
        with _flock(path, timeout_s if wait else 0.0, payload):
            yield me
        return
    key = f"{fs.protocol!r}:{path}"
    guard = _thread_lock(key)
    if not guard.acquire(timeout=timeout_s if wait else 0):
        holder = read_holder(fs, path)
        who = _describe(holder, path) or "another thread of this process"
        raise LockTimeout(_timeout_message(path, timeout_s, holder=who), holder=holder)
    try:
        with _object_lock(fs, path, timeout_s if wait else 0.0, payload):
            yield me
    finally:
        guard.release()


def _timeout_message(path: str, timeout_s: float, holder: str | None) -> str:
    who = f" (held by {holder})" if holder else ""
    return (
        f"could not take the registry lock {path!r} within {timeout_s:g}s{who}; another promotion is running. "
        f"Retry later, or raise FERRY_LOCK_TIMEOUT_S"
    )


def read_holder(fs: Any, path: str) -> dict[str, Any] | None:
    """The record in a held lock, or None when it is free or says nothing yet.

    A local holder writes its record just after taking the lock, so an empty record is read again for a moment.
    """
    for _ in range(20):
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


def _describe(holder: dict[str, Any] | None, path: str) -> str | None:
    if not holder or not {"pid", "host", "since"} <= holder.keys():
        return None
    return f"pid {holder['pid']} on {holder['host']} since {holder['since']}; delete {path!r} if that process is gone"


def _gone(holder: dict[str, Any] | None) -> bool:
    """True when the holder ran on this machine and its process no longer exists (a crashed holder's lock)."""
    if not holder or holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _backoff(deadline: float, delay: float) -> float | None:
    """Sleep before the next try and return the next delay; None when the deadline has passed."""
    if time.monotonic() >= deadline:
        return None
    time.sleep(delay)
    return min(delay * 2, _POLL_MAX_S)


@contextlib.contextmanager
def _flock(path: str, timeout_s: float, payload: bytes) -> Iterator[None]:
    os.makedirs(_parent(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        delay: float | None = _POLL_MIN_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                delay = _backoff(deadline, delay or _POLL_MIN_S)
                if delay is None:
                    holder = read_holder(local_fs(), path)
                    raise LockTimeout(
                        _timeout_message(path, timeout_s, holder=_describe(holder, path)), holder=holder
                    ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, payload, 0)
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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


@contextlib.contextmanager
def _object_lock(fs: Any, path: str, timeout_s: float, payload: bytes) -> Iterator[None]:
    fs.makedirs(_parent(path), exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay: float | None = _POLL_MIN_S
    took_over = False
    while not _try_create(fs, path, payload):
        holder = read_holder(fs, path)
        if not took_over and _gone(holder):
            took_over = True
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)
            continue
        delay = _backoff(deadline, delay or _POLL_MIN_S)
        if delay is None:
            raise LockTimeout(_timeout_message(path, timeout_s, holder=_describe(holder, path)), holder=holder)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if bytes(fs.cat_file(path)) == payload:
                fs.rm(path)
