"""API keys with scopes, checked by an ASGI middleware in front of the service.

Keys are configured only as sha256 hashes (:class:`~ferry.online.settings.ApiKeyEntry`); a request presents the
key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. No key, an unknown key or a revoked key gets the
same 401; a key without the endpoint's scope gets 403. The probes stay open, and so does ``/metrics`` unless
``FERRY_ONLINE_METRICS_REQUIRE_KEY`` asks for a key with the ``metrics`` scope; any other path not listed in the
scope map needs a valid key of any scope.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from ferry.online.settings import ApiKeyEntry, OnlineSettings, Scope

__all__ = [
    "KEY_NAME",
    "OPEN_PATHS",
    "SCOPE_BY_PATH",
    "UNAUTHORIZED",
    "ApiKeyMiddleware",
    "Decision",
    "KeyStore",
    "hash_key",
]

log = logging.getLogger("ferry.online.auth")

ASGIScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, Receive, Send], Awaitable[None]]

KEY_NAME = "ferry.key"
"""The ASGI scope entry where the middleware leaves the name of the key a request was allowed with."""

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
SCOPE_BY_PATH: Mapping[str, Scope] = {
    "/predict": "predict",
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


class KeyStore:
    """Configured keys, looked up by the hash of the presented key."""

    def __init__(self, entries: Iterable[ApiKeyEntry]) -> None:
        self._by_hash = {e.sha256: e for e in entries}

    def check(self, key: str | None, scope: Scope | None) -> Decision:
        """Whether ``key`` may use an endpoint needing ``scope`` (None: any valid key will do).

        Every 401 answers the same :data:`UNAUTHORIZED` (a caller must not learn that a key once existed); why it
        was refused is in :attr:`Decision.why`, for the server's log.
        """
        if not key:
            return Decision(401, UNAUTHORIZED, why="no key")
        entry = self._by_hash.get(hash_key(key))
        if entry is None:
            return Decision(401, UNAUTHORIZED, why="unknown key")
        if entry.revoked:
            return Decision(401, UNAUTHORIZED, entry.name, why="revoked key")
        if scope is not None and scope not in entry.scopes:
            return Decision(403, f"this API key lacks the {scope!r} scope", entry.name)
        return Decision(200, "ok", entry.name)


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


async def send_json(
    send: Send, status: int, body: Mapping[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})


class ApiKeyMiddleware:
    """ASGI middleware: refuses requests whose key does not grant the path's scope. ``keys`` None: read settings."""

    def __init__(
        self, app: ASGIApp, keys: KeyStore | None = None, prefix: str = "", open_paths: frozenset[str] | None = None
    ) -> None:
        self.app = app
        self._keys = keys
        self._open = open_paths
        self.prefix = prefix.rstrip("/")

    @property
    def keys(self) -> KeyStore:
        if self._keys is None:
            settings = OnlineSettings()
            self._keys = KeyStore(settings.api_keys)
            if self._open is None:
                self._open = OPEN_PATHS - {"/metrics"} if settings.metrics_require_key else OPEN_PATHS
        return self._keys

    @property
    def open_paths(self) -> frozenset[str]:
        if self._open is None:
            _ = self.keys
        return self._open if self._open is not None else OPEN_PATHS

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :] or "/"
        if path in self.open_paths:
            await self.app(scope, receive, send)
            return
        decision = self.keys.check(presented_key(scope.get("headers", ())), SCOPE_BY_PATH.get(path))
        if decision.status != 200:
            log.info(
                "refused %s %s: %s (key %s)",
                scope.get("method"), path[:200], decision.why or decision.reason, decision.key_name,
            )  # fmt: skip
            extra = [(b"www-authenticate", b"Bearer")] if decision.status == 401 else []
            await send_json(send, decision.status, {"error": decision.reason}, extra)
            return
        scope[KEY_NAME] = decision.key_name  # who asks, for the per-key share (ferry.online.shed)
        await self.app(scope, receive, send)
