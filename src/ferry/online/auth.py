"""API keys with scopes, checked by the service's front door (:mod:`ferry.online.front`) before a body is read.

Keys are configured only as sha256 hashes (:class:`~ferry.online.settings.ApiKeyEntry`); a request presents the
key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. No key, an unknown key or a revoked key gets the
same 401; a key without the endpoint's scope gets 403. The probes stay open, and so does ``/metrics`` unless
``FERRY_ONLINE_METRICS_REQUIRE_KEY`` asks for a key with the ``metrics`` scope; the API docs (``/``, ``/docs.json``
and their assets) need a valid key unless ``FERRY_ONLINE_DOCS_REQUIRE_KEY`` is false; any other path not listed in
the scope map needs a valid key of any scope.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from ferry.online.settings import ApiKeyEntry, OnlineSettings, Scope

__all__ = [
    "DOCS_PATHS",
    "OPEN_PATHS",
    "SCOPE_BY_PATH",
    "UNAUTHORIZED",
    "Decision",
    "Guard",
    "KeyStore",
    "Refusal",
    "hash_key",
]

log = logging.getLogger("ferry.online.auth")

ASGIScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
DOCS_PATHS = frozenset({"/", "/docs", "/docs.json"})
DOCS_PREFIXES = ("/static_content/", "/assets/")
"""BentoML's API docs: the Swagger page, the OpenAPI document and the page's assets."""
SCOPE_BY_PATH: Mapping[str, Scope] = {
    "/predict": "predict",
    "/explain": "explain",  # a separate scope: one explanation costs thousands of model evaluations
    "/model": "predict",
    "/feedback": "feedback",
    "/telemetry": "telemetry",  # edge devices: a key that may report heartbeats and do nothing else
    "/refresh": "admin",
    "/metrics": "metrics",  # only when FERRY_ONLINE_METRICS_REQUIRE_KEY is set; otherwise /metrics is open
}


def hash_key(key: str) -> str:
    """The hex sha256 of a key, as it is written in ``FERRY_ONLINE_API_KEYS``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


UNAUTHORIZED = "a valid API key is required; send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


@dataclass(frozen=True)
class Decision:
    status: int  # 200 = allowed, 401 or 403
    reason: str  # what the caller is told
    key_name: str | None = None
    why: str = ""  # what the server logs
    entry: ApiKeyEntry | None = None  # the key allowed (for its limits)


class KeyStore:
    """Configured keys: ``entries``, plus those of ``path`` (a JSON list), read again when the file changes.

    A presented key is hashed; its hash finds the entry in a table, and is compared with the entry's hash in
    constant time. Looking up a sha256 of the caller's key tells a caller nothing about the configured hashes (they
    cannot choose what their key hashes to), and it keeps the check O(1): comparing with every hash in turn took
    357 us per request with 1,000 keys (``bench/online.py --security``). The file is looked at no
    more than once per ``reload_s``; when it changed, its keys replace the old ones. A file that cannot be read or
    parsed keeps the keys read last, and says so in the log and in :attr:`errors`.
    """

    def __init__(self, entries: Iterable[ApiKeyEntry], path: Path | None = None, *, reload_s: float = 1.0) -> None:
        self._fixed = tuple(entries)
        self._path = path
        self._reload_s = reload_s
        self._seen: tuple[int, int, int] | None = None
        self._next = 0.0
        self._lock = threading.Lock()
        self.errors = 0
        self._entries = self._fixed
        self._by_hash = _table(self._fixed)
        if path is not None:
            self._reload(force=True)

    @classmethod
    def from_settings(cls, settings: OnlineSettings) -> KeyStore:
        return cls(settings.api_keys, settings.api_keys_file)

    @property
    def entries(self) -> tuple[ApiKeyEntry, ...]:
        self._reload()
        return self._entries

    def _reload(self, *, force: bool = False) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        with self._lock:
            self._next = now + self._reload_s
            try:
                stat = self._path.stat()
                seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)  # an atomic replace is a new inode
                if seen == self._seen:
                    return
                loaded = _ENTRIES.validate_json(self._path.read_bytes())
            except (OSError, ValueError) as exc:
                self.errors += 1
                log.error("API key file %s could not be read (%s); keeping the keys read last", self._path, exc)
                return
            self._seen = seen
            self._entries = self._fixed + tuple(loaded)
            self._by_hash = _table(self._entries)
            log.info("API keys read from %s: %d", self._path, len(loaded))

    def check(self, key: str | None, scope: Scope | None) -> Decision:
        """Whether ``key`` may use an endpoint needing ``scope`` (None: any valid key will do).

        Every 401 answers the same :data:`UNAUTHORIZED` (a caller must not learn that a key once existed); why it
        was refused is in :attr:`Decision.why`, for the server's log and the refusal metrics.
        """
        if not key:
            return Decision(401, UNAUTHORIZED, why="no_key")
        presented = hash_key(key)
        self._reload()
        found = self._by_hash.get(presented)
        if found is None or not hmac.compare_digest(presented.encode(), found[0].sha256.encode()):
            return Decision(401, UNAUTHORIZED, why="unknown_key")
        entry, allowed = found
        if entry.revoked:
            return Decision(401, UNAUTHORIZED, entry.name, why="revoked_key")
        if entry.expires_at is not None and entry.expires_at <= datetime.now(UTC):
            return Decision(401, UNAUTHORIZED, entry.name, why="expired_key")
        if scope is not None and scope not in entry.scopes:
            return Decision(403, f"this API key lacks the {scope!r} scope", entry.name, why="scope")
        return allowed


_ENTRIES = TypeAdapter(list[ApiKeyEntry])


def _table(entries: Iterable[ApiKeyEntry]) -> dict[str, tuple[ApiKeyEntry, Decision]]:
    """Entries by hash, each with the decision that lets it in (made once per key, not once per request); of two
    entries with one hash, the later one (the key file's over the environment's)."""
    return {entry.sha256: (entry, Decision(200, "ok", entry.name, entry=entry)) for entry in entries}


def public_paths(settings: OnlineSettings) -> tuple[frozenset[str], tuple[str, ...]]:
    """The paths (and path prefixes) anyone may reach without a key, by the settings: the probes, ``/metrics``
    unless it requires a key, and the API docs when they do not."""
    paths = OPEN_PATHS - {"/metrics"} if settings.metrics_require_key else OPEN_PATHS
    if settings.docs_require_key:
        return paths, ()
    return paths | DOCS_PATHS, DOCS_PREFIXES


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
        elif lowered == b"x-api-key" and value:
            return value.decode("latin-1").strip()
    return None


@dataclass(frozen=True)
class Refusal:
    """An answer the front door gives instead of the service: ``status``, the JSON ``body``, extra ``headers``, and
    the ``rule`` it is counted under in the refusal metrics."""

    status: int
    body: Mapping[str, Any]
    rule: str
    headers: tuple[tuple[bytes, bytes], ...] = ()

    async def send(self, send: Send, *extra: tuple[bytes, bytes]) -> None:
        await send_json(send, self.status, self.body, (*self.headers, *extra))


async def send_json(
    send: Send, status: int, body: Mapping[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """Which requests need a key, and whether the key presented will do: the open paths (:func:`public_paths`) pass
    without one; any other path needs a valid key with the path's scope (:data:`SCOPE_BY_PATH`; any valid key for a
    path not listed there). ``keys`` None: read :class:`OnlineSettings` on first use."""

    def __init__(
        self,
        keys: KeyStore | None = None,
        prefix: str = "",
        open_paths: frozenset[str] | None = None,
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self._keys = keys
        self._open = open_paths
        self._open_prefixes = open_prefixes
        self.prefix = prefix.rstrip("/")

    @property
    def keys(self) -> KeyStore:
        if self._keys is None:
            settings = OnlineSettings()
            self._keys = KeyStore.from_settings(settings)
            if self._open is None:
                self._open, self._open_prefixes = public_paths(settings)
        return self._keys

    @property
    def open_paths(self) -> frozenset[str]:
        if self._open is None:
            _ = self.keys
        return self._open if self._open is not None else OPEN_PATHS

    def decide(self, path: str, headers: Iterable[tuple[bytes, bytes]]) -> Decision | None:
        """None for a path anyone may reach; else the :class:`Decision` on the key the headers present."""
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :] or "/"
        if path in self.open_paths or (self._open_prefixes and path.startswith(self._open_prefixes)):
            return None
        return self.keys.check(presented_key(headers), SCOPE_BY_PATH.get(path))
