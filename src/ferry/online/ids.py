"""Prediction ids that the service can verify without a lookup: a random nonce and its HMAC under a service key.

An id is 32 hex digits, as before: 8 random bytes, then the first 8 bytes of HMAC-SHA256(key, nonce). ``/feedback``
accepts labels only for ids that verify, so labels for predictions the service never made (a typo, a guess, a
forged id) cannot reach the quality figures, and refusing them needs no store of issued ids. Forging one id takes
about 2^64 guesses.

The key is shared by every replica of a model's service and survives restarts (ids issued before a restart still
verify): ``FERRY_ONLINE_ID_KEY`` when set, else a random key made on first start and kept in the registry::

    models/<model>/online/prediction-ids.key      64 hex digits; created once, under the model's lock
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading

from ferry import storage
from ferry.registry import Registry, layout

__all__ = ["PredictionIds"]

_ID = re.compile(r"^[0-9a-f]{32}$")
NONCE_BLOCK = 1024
"""Nonces read from the OS at once (8 KiB): ``os.urandom`` per id was a system call per prediction."""


class PredictionIds:
    """Makes and checks prediction ids under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a prediction id key needs at least 16 bytes")
        self._mac = hmac.new(key, digestmod=hashlib.sha256)  # copied per id: no digest lookup per id
        self._nonces = b""
        self._next = 0
        self._lock = threading.Lock()

    def new(self) -> str:
        with self._lock:  # the nonces are read from the OS in blocks: one system call per NONCE_BLOCK ids
            if self._next >= len(self._nonces):
                self._nonces, self._next = os.urandom(8 * NONCE_BLOCK), 0
            nonce = self._nonces[self._next : self._next + 8]
            self._next += 8
        return (nonce + self._sign(nonce)).hex()

    def _sign(self, nonce: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(nonce)
        return mac.digest()[:8]

    def valid(self, prediction_id: str) -> bool:
        """True when this service (or a replica sharing its key) issued ``prediction_id``."""
        if not _ID.match(prediction_id):
            return False
        raw = bytes.fromhex(prediction_id)
        return hmac.compare_digest(raw[8:], self._sign(raw[:8]))

    @classmethod
    def for_model(
        cls, registry_url: str, model: str, *, key: str | None = None, lock_timeout_s: float = 30.0
    ) -> PredictionIds:
        """The ids of ``model``: under ``key`` (hex or text) when given, else under the key kept in the registry."""
        if key:
            return cls(key.encode("utf-8"))
        fs, root = Registry(registry_url).open_store()
        path = layout.online_file(root, model, "prediction-ids.key")
        if not storage.exists(fs, path):
            with storage.lock(fs, f"{path}.lock", lock_timeout_s):
                if not storage.exists(fs, path):
                    storage.atomic_write_bytes(fs, path, secrets.token_hex(32).encode())
        return cls(bytes.fromhex(storage.read_bytes(fs, path).decode().strip()))
