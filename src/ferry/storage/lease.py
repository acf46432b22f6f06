"""The one lock of ferry, as a lease: a named holder and an expiry, taken over once a crashed holder's lease runs out.

A lock is named by a path. Its holder writes a record there (a token, host, pid, since, and what the caller adds,
e.g. the command), so a refusal can say who holds it. Every exclusive section uses this lock: channel moves and
registration (:mod:`ferry.registry.store`), a batch output (:mod:`ferry.batch.output`), TUF publishing
(:mod:`ferry.publish.tufrepo`) and the online service's id key.

- **Local filesystem**: ``fcntl.flock`` on the file (created if missing, never deleted; emptied on release). The
  kernel drops it when its holder dies, so a crash never leaves a stale lock and no lease is needed. It does not work
  across machines on network filesystems that do not honour ``flock``.
- **Object stores**: the lock is an object created with exclusive create (``"xb"``), which s3fs sends as a
  conditional write (``If-None-Match: *``), so of two writers exactly one creates it; where a driver has no
  exclusive create, a check-then-create leaves a small race between machines (threads of one process are always
  serialised here). The record also carries ``lease_s`` and ``expires`` (seconds since the epoch), and while the
  lock is held a thread renews it every third of the lease. Once ``expires`` has passed, the holder is taken to be
  gone: a waiter creates a claim ``<lock>.takeover-<token>`` exclusively (one waiter wins), checks that the lock
  still holds the expired token, replaces it and logs a warning naming the old holder. A record without
  ``expires`` (written by hand) never expires: the timeout message names it so that an operator can delete it.
  Expiry is judged by the waiter's clock against the holder's, so keep the lease well above any clock skew.

The lease length is ``FERRY_LOCK_LEASE_S`` (:class:`ferry.settings.StorageSettings`) unless a caller passes one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from ferry.errors import LockTimeout, RegistryError
from ferry.storage.files import is_local, local_fs, parent_path

__all__ = ["lock", "lock_owner", "read_holder"]

log = logging.getLogger(__name__)

# Threads of one process share these so that, on filesystems where exclusive-create is not atomic, two threads
# of the same process still never hold the same lock object at once. Creating an empty dict starts nothing.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()

_POLL_MIN_S = 0.005
_POLL_MAX_LOCAL_S = 0.01
_POLL_MAX_OBJECT_S = 0.1  # each try is a request to the store


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
    fs: Any,
    path: str,
    timeout_s: float,
    *,
    wait: bool = True,
    owner: Mapping[str, Any] | None = None,
    lease_s: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Hold an exclusive lock named by ``path`` for the duration of the ``with`` block; yields the owner record.

    Waits up to ``timeout_s`` seconds (``wait=False``: tries once), then raises :class:`~ferry.errors.LockTimeout`
    naming the lock path, with the holder's record as ``holder`` when it can be read. ``owner`` (default
    :func:`lock_owner`) is written into the lock while it is held. ``lease_s`` (default ``FERRY_LOCK_LEASE_S``) is
    how long an object-store lock outlives a holder that stopped renewing it (see the module docstring).
    """
    if timeout_s <= 0:
        raise RegistryError(f"lock timeout must be positive, got {timeout_s!r}; set FERRY_LOCK_TIMEOUT_S")
    me = dict(owner) if owner is not None else lock_owner()
    me.setdefault("token", uuid.uuid4().hex)
    if is_local(fs):
        with _flock(path, timeout_s if wait else 0.0, json.dumps(me, sort_keys=True).encode()):
            yield me
        return
    me["lease_s"] = _lease_s(lease_s)
    guard = _thread_lock(f"{fs.protocol!r}:{path}")
    if not guard.acquire(timeout=timeout_s if wait else 0):
        holder = read_holder(fs, path)
        who = _describe(holder, path) or "another thread of this process"
        raise LockTimeout(_timeout_message(path, timeout_s, holder=who), holder=holder)
    try:
        with _object_lease(fs, path, timeout_s if wait else 0.0, me):
            yield me
    finally:
        guard.release()


def _lease_s(lease_s: float | None) -> float:
    if lease_s is None:
        from ferry.settings import StorageSettings

        lease_s = StorageSettings().lock_lease_s
    if not lease_s > 0:
        raise RegistryError(f"lock lease must be positive, got {lease_s!r}; set FERRY_LOCK_LEASE_S")
    return float(lease_s)


def _thread_lock(key: str) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


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


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _describe(holder: dict[str, Any] | None, path: str) -> str | None:
    if not holder or not {"pid", "host", "since"} <= holder.keys():
        return None
    who = f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
    expires = holder.get("expires")
    if isinstance(expires, int | float):
        return f"{who}; its lease runs until {_when(expires)}, then the lock is taken over"
    return f"{who}; delete {path!r} if that process is gone"


def _expired(holder: dict[str, Any]) -> bool:
    expires = holder.get("expires")
    return isinstance(expires, int | float) and time.time() > expires


def _backoff(deadline: float, delay: float, ceiling: float) -> float | None:
    """Sleep before the next try and return the next delay; None when the deadline has passed."""
    if time.monotonic() >= deadline:
        return None
    time.sleep(delay)
    return min(delay * 2, ceiling)


@contextlib.contextmanager
def _flock(path: str, timeout_s: float, payload: bytes) -> Iterator[None]:
    os.makedirs(parent_path(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        delay: float | None = _POLL_MIN_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                delay = _backoff(deadline, delay or _POLL_MIN_S, _POLL_MAX_LOCAL_S)
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


def _stamp(me: Mapping[str, Any]) -> bytes:
    """The lock record of ``me`` with its lease running from now."""
    return json.dumps({**me, "expires": round(time.time() + me["lease_s"], 3)}, sort_keys=True).encode()


def _try_create(fs: Any, path: str, payload: bytes) -> bool:
    """Create ``path`` only if it does not exist; False when someone else holds it."""
    try:
        with fs.open(path, "xb") as fh:
            fh.write(payload)
    except FileExistsError:
        # A retried request whose first try landed (its answer was lost on the way) finds our own record.
        return _holds(fs, path, payload)
    except (ValueError, NotImplementedError):
        # The backend has no exclusive-create mode: check, then create.
        if fs.exists(path):
            return False
        fs.pipe_file(path, payload)
    # Read back: a backend that silently treats "xb" like "wb" lets a later writer overwrite us; then we lost.
    return _holds(fs, path, payload)


def _holds(fs: Any, path: str, payload: bytes) -> bool:
    try:
        return bytes(fs.cat_file(path)) == payload
    except FileNotFoundError:
        return False


def _take_over(fs: Any, path: str, stale: dict[str, Any], me: dict[str, Any]) -> bool:
    """Replace the expired lock ``stale`` with ours; False when another waiter is doing it or did it first."""
    token = stale.get("token")
    if not isinstance(token, str) or not token.isalnum():
        return False
    claim = f"{path}.takeover-{token}"
    if not _try_create(fs, claim, _stamp(me)):
        other = read_holder(fs, claim)
        if other is not None and _expired(other):  # a waiter that died half-way through its takeover
            with contextlib.suppress(FileNotFoundError):
                fs.rm(claim)
        return False
    try:
        current = read_holder(fs, path)
        if current is None or current.get("token") != token:
            return False
        fs.rm(path)
        if not _try_create(fs, path, _stamp(me)):
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(claim)
    log.warning(
        "took over the lock %s from pid %s on %s (since %s): its lease expired at %s",
        path,
        stale.get("pid"),
        stale.get("host"),
        stale.get("since"),
        _when(float(stale["expires"])),
    )
    return True


class _Renewer(threading.Thread):
    """Rewrites the lock with a fresh expiry every third of the lease while it is held."""

    def __init__(self, fs: Any, path: str, me: dict[str, Any]) -> None:
        super().__init__(name=f"lease {path}", daemon=True)
        self.fs, self.path, self.me = fs, path, me
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.me["lease_s"] / 3):
            try:
                holder = read_holder(self.fs, self.path)
                if holder is None or holder.get("token") != self.me["token"]:
                    log.error("lost the lock %s: it is held by %s now", self.path, _describe(holder, self.path))
                    return
                self.fs.pipe_file(self.path, _stamp(self.me))
            except OSError as exc:  # the store did not answer this time; the next round tries again
                log.warning("could not renew the lease of %s: %s", self.path, exc)


@contextlib.contextmanager
def _object_lease(fs: Any, path: str, timeout_s: float, me: dict[str, Any]) -> Iterator[None]:
    fs.makedirs(parent_path(path), exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay: float | None = _POLL_MIN_S
    while not _try_create(fs, path, _stamp(me)):
        holder = read_holder(fs, path)
        if holder is not None and _expired(holder) and _take_over(fs, path, holder, me):
            break
        delay = _backoff(deadline, delay or _POLL_MIN_S, _POLL_MAX_OBJECT_S)
        if delay is None:
            raise LockTimeout(_timeout_message(path, timeout_s, holder=_describe(holder, path)), holder=holder)
    renewer = _Renewer(fs, path, me)
    renewer.start()
    try:
        yield
    finally:
        renewer.stopped.set()
        renewer.join()
        with contextlib.suppress(FileNotFoundError):
            holder = read_holder(fs, path)
            if holder is not None and holder.get("token") == me["token"]:
                fs.rm(path)
