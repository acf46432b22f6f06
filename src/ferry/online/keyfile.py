"""The API key file (``FERRY_ONLINE_API_KEYS_FILE``) as ``ferry keys`` edits it: create, list, revoke.

The file is a JSON list of :class:`~ferry.online.settings.ApiKeyEntry`, the form the service reads again when it
changes (:class:`~ferry.online.auth.KeyStore`), so a key created or revoked here works, or stops working, on a
running service within a second, without a restart. The file holds only sha256 hashes: a new key's secret is
returned once, by :func:`create_key`, and stored nowhere.

Every change reads, edits and replaces the file under a lock beside it (``<file>.lock``, :func:`ferry.storage.lock`)
with an atomic write (mode 0600), so concurrent ``ferry keys`` commands never lose each other's keys and the service
never reads half a file. A revoked key stays in the file, marked ``revoked``, so logs and metrics that name it keep
meaning something and its name is never given to another key.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from ferry import storage
from ferry.errors import ConfigError
from ferry.online.auth import hash_key
from ferry.online.settings import ApiKeyEntry, Scope

__all__ = ["KEY_PREFIX", "create_key", "read_keys", "revoke_key"]

KEY_PREFIX = "fry_"
"""Every key ``ferry keys create`` makes starts with this, so a leaked one is easy to find (secret scanners)."""

_ENTRIES = TypeAdapter(list[ApiKeyEntry])
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A key's name: it is shown in logs and is a label of ``/metrics``, so plain characters only."""


def read_keys(path: Path) -> list[ApiKeyEntry]:
    """The entries of the key file (none when it does not exist yet); ConfigError when it cannot be parsed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"API key file {path} cannot be read: {exc}") from exc
    if not data.strip():
        return []
    try:
        return _ENTRIES.validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"API key file {path} is not a list of key entries: at {where}: {first['msg']}") from exc


@contextmanager
def _editing(path: Path, lock_timeout_s: float) -> Iterator[list[ApiKeyEntry]]:
    """Hold the file's lock, yield its entries for editing, then replace the file atomically with them."""
    fs = storage.local_fs()
    path.parent.mkdir(parents=True, exist_ok=True)
    with storage.lock(fs, str(path.with_name(path.name + ".lock")), lock_timeout_s):
        entries = read_keys(path)
        yield entries
        body = json.dumps([e.model_dump(mode="json", exclude_none=True) for e in entries], indent=2) + "\n"
        storage.atomic_write_bytes(fs, str(path), body.encode(), mode=0o600)


def create_key(
    path: Path,
    name: str,
    scopes: Sequence[Scope],
    *,
    expires_at: datetime | None = None,
    rate_per_s: float | None = None,
    burst: int | None = None,
    daily_quota: int | None = None,
    lock_timeout_s: float = 30.0,
) -> tuple[str, ApiKeyEntry]:
    """Add a new key named ``name`` to the file; returns its secret (shown once, stored nowhere) and its entry.

    ConfigError when the name is taken (by a live or a revoked key) or a field is out of bounds (naming it).
    """
    if not NAME_RULE.fullmatch(name):
        raise ConfigError(f"key name {name!r} is invalid: 1 to 64 letters, digits, '.', '_' or '-', starting with one")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        entry = ApiKeyEntry(
            name=name,
            sha256=hash_key(secret),
            scopes=tuple(dict.fromkeys(scopes)),
            expires_at=expires_at,
            rate_per_s=rate_per_s,
            burst=burst,
            daily_quota=daily_quota,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"key {first['loc'][0]}: {first['msg']}") from exc
    with _editing(path, lock_timeout_s) as entries:
        if any(e.name == name for e in entries):
            raise ConfigError(f"a key named {name!r} is already in {path} (names are never reused); choose another")
        entries.append(entry)
    return secret, entry


def revoke_key(path: Path, name: str, *, lock_timeout_s: float = 30.0) -> ApiKeyEntry:
    """Mark the key named ``name`` revoked (the service refuses it with 401 within a second); ConfigError when no
    key has that name. Revoking a revoked key changes nothing."""
    with _editing(path, lock_timeout_s) as entries:
        for i, entry in enumerate(entries):
            if entry.name == name:
                entries[i] = entry.model_copy(update={"revoked": True})
                return entries[i]
        names = ", ".join(e.name for e in entries) or "none"
        raise ConfigError(f"no key named {name!r} in {path} (keys: {names})")
