"""Encryption at rest: the one layer every object that holds rows of data is written and read through.

With ``FERRY_ENCRYPTION_KEY_FILE`` set, :func:`seal` turns bytes into a self-describing *envelope* and
:func:`unseal` turns an envelope back into its bytes; bytes that are no envelope pass through unchanged, so every
reader works on encrypted and plaintext objects alike (``ferry.storage.read_bytes`` unseals what it reads). Without
the setting nothing is encrypted, and reading an envelope is a clear error that asks for the key.

The key file is a *key ring*: one key per line, 64 hex digits (32 bytes, e.g. ``openssl rand -hex 32``), ``#``
comments allowed. The first key encrypts; every key in the file decrypts. A key's id is the first 8 bytes of a
sha256 over it, so an envelope names the key it needs without revealing it. The keys are key-encryption keys: each
object gets a fresh data key, wrapped by the ring's first key (AES-256-GCM both)::

    offset  size  field
    0       8     magic  b"FERRYENC"
    8       1     format version (1)
    9       8     key id of the key-encryption key
    17      12    nonce of the wrapped data key
    29      48    data key (32 bytes), AES-GCM-encrypted with the key-encryption key, with its tag
    77      12    nonce of the body
    89      ...   body, AES-GCM-encrypted with the data key, with its 16-byte tag

Both encryptions authenticate the first 17 bytes (and the body the wrapped key too), so a changed, truncated or
swapped byte anywhere fails as :class:`~ferry.errors.SealedObjectError`, never as wrong data. A line of a
write-ahead file is sealed on its own (:func:`seal_line`): ``FERRYENC:`` and the envelope in base64.

Which objects are sealed is decided by their writers, by kind: the online logs (and their write-ahead and
quarantine files), batch input samples, reference samples, run-directory data copies, Evidently reports, and the
model artifacts when ``FERRY_ENCRYPTION_MODELS`` is true (:func:`seal` with ``model=True``). ``ferry keys rotate``
(:mod:`ferry.storage.rotation`) re-encrypts them under a new key. Nothing here runs at import time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from ferry.errors import EncryptionKeyError, SealedObjectError
from ferry.settings import EncryptionSettings, explain

__all__ = [
    "HEADER",
    "LINE_PREFIX",
    "MAGIC",
    "KeyRing",
    "is_sealed",
    "key_id_of",
    "keyring",
    "line_envelope",
    "new_key_hex",
    "seal",
    "seal_line",
    "sealing",
    "unseal",
    "unseal_line",
]

MAGIC = b"FERRYENC"
VERSION = 1
KEY_BYTES = 32
_ID = 8
_NONCE = 12
_TAG = 16
HEADER = len(MAGIC) + 1 + _ID
_WRAPPED = _NONCE + KEY_BYTES + _TAG
_MIN = HEADER + _WRAPPED + _NONCE + _TAG
LINE_PREFIX = b"FERRYENC:"
KEY_FILE_VARIABLE = "FERRY_ENCRYPTION_KEY_FILE"
MODELS_VARIABLE = "FERRY_ENCRYPTION_MODELS"


def key_id(key: bytes) -> bytes:
    """The 8-byte id of ``key``: what an envelope names, never the key itself."""
    return hashlib.sha256(b"ferry encryption key id\x00" + key).digest()[:_ID]


def new_key_hex() -> str:
    """A fresh random key, as a key file's line holds it."""
    return secrets.token_hex(KEY_BYTES)


@dataclass(frozen=True)
class KeyRing:
    """The keys of a key file: the first one encrypts, all of them decrypt. ``source`` names the file in errors."""

    keys: tuple[bytes, ...]
    source: str

    @property
    def current(self) -> bytes:
        return self.keys[0]

    @property
    def current_id(self) -> str:
        return key_id(self.current).hex()

    def ids(self) -> list[str]:
        return [key_id(k).hex() for k in self.keys]

    def find(self, wanted: bytes) -> bytes | None:
        return next((k for k in self.keys if key_id(k) == wanted), None)

    @classmethod
    def parse(cls, text: bytes, source: str) -> KeyRing:
        """The keys of a key file's bytes; :class:`EncryptionKeyError` naming the file, the line and what is wrong."""
        try:
            lines = text.decode("ascii").splitlines()
        except UnicodeDecodeError:
            raise EncryptionKeyError(
                f"{source}: the key file is not text; write each key as 64 hex digits on a line of its own "
                f"(make one with `openssl rand -hex 32`)"
            ) from None
        keys: list[bytes] = []
        for number, line in enumerate(lines, 1):
            body = line.split("#", 1)[0].strip()
            if not body:
                continue
            try:
                key = bytes.fromhex(body)
            except ValueError:
                raise EncryptionKeyError(
                    f"{source} line {number}: a key is 64 hex digits (32 bytes); this line is not hex"
                ) from None
            if len(key) != KEY_BYTES:
                raise EncryptionKeyError(
                    f"{source} line {number}: a key is {KEY_BYTES} bytes (64 hex digits), this one is {len(key)} "
                    f"bytes; make one with `openssl rand -hex 32`"
                )
            if key not in keys:
                keys.append(key)
        if not keys:
            raise EncryptionKeyError(f"{source}: the key file holds no key; make one with `ferry keys data-key FILE`")
        return cls(tuple(keys), source)

    def dump(self) -> bytes:
        """The key file's bytes: the first line encrypts, the others only decrypt."""
        lines = ["# ferry data encryption keys: the first line encrypts, every line decrypts (ferry keys rotate)"]
        lines += [f"{k.hex()}  # id {key_id(k).hex()}" for k in self.keys]
        return ("\n".join(lines) + "\n").encode()


_cache: dict[tuple[str, int, int, int], KeyRing] = {}
_cache_lock = threading.Lock()


def load_ring(path: str | Path) -> KeyRing:
    """The key ring in the file at ``path`` (re-read when the file changes)."""
    source = str(path)
    try:
        st = os.stat(source)
    except OSError as exc:
        raise EncryptionKeyError(
            f"{source}: cannot read the encryption key file ({exc.strerror or exc}); set {KEY_FILE_VARIABLE} to an "
            f"existing file (make one with `ferry keys data-key FILE`)"
        ) from None
    stamp = (source, st.st_mtime_ns, st.st_size, st.st_ino)
    with _cache_lock:
        found = _cache.get(stamp)
    if found is not None:
        return found
    with open(source, "rb") as fh:
        ring = KeyRing.parse(fh.read(), source)
    with _cache_lock:
        _cache.clear()
        _cache[stamp] = ring
    return ring


_settings: dict[tuple[str | None, str | None], EncryptionSettings] = {}


def settings() -> EncryptionSettings:
    """``EncryptionSettings`` from the environment (read again only when its variables change)."""
    stamp = (os.environ.get(KEY_FILE_VARIABLE), os.environ.get(MODELS_VARIABLE))
    found = _settings.get(stamp)
    if found is None:
        try:
            found = EncryptionSettings()
        except ValidationError as exc:
            raise EncryptionKeyError(explain(exc)) from None
        _settings.clear()
        _settings[stamp] = found
    return found


def keyring() -> KeyRing | None:
    """The key ring ``FERRY_ENCRYPTION_KEY_FILE`` names, or None when encryption at rest is off."""
    path = settings().key_file
    return load_ring(path) if path else None


def sealing(*, model: bool = False) -> KeyRing | None:
    """The key ring new objects are sealed with, or None when they are written in clear; ``model=True`` asks for a
    model artifact, sealed only when ``FERRY_ENCRYPTION_MODELS`` is true as well."""
    ring = keyring()
    return ring if ring is None or not model or settings().models else None


def seal(data: bytes, *, model: bool = False, ring: KeyRing | None = None) -> bytes:
    """``data`` in an envelope under the ring's first key (``ring``, or the configured one); ``data`` itself when
    encryption at rest is off (or, for a model artifact, not asked for)."""
    ring = ring if ring is not None else sealing(model=model)
    if ring is None:
        return data
    kek = ring.current
    header = MAGIC + bytes([VERSION]) + key_id(kek)
    data_key = AESGCM.generate_key(bit_length=8 * KEY_BYTES)
    wrap_nonce = os.urandom(_NONCE)
    wrapped = wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, data_key, header)
    nonce = os.urandom(_NONCE)
    body = AESGCM(data_key).encrypt(nonce, data, header + wrapped)
    return header + wrapped + nonce + body


def is_sealed(data: bytes) -> bool:
    """True when ``data`` starts like an envelope (a write-ahead file of sealed lines is no envelope)."""
    return data[: len(MAGIC)] == MAGIC and not data.startswith(LINE_PREFIX)


def key_id_of(data: bytes) -> str | None:
    """The hex id of the key an envelope was sealed with; None for bytes in clear."""
    return data[len(MAGIC) + 1 : HEADER].hex() if is_sealed(data) and len(data) >= HEADER else None


def unseal(data: bytes, *, name: str, ring: KeyRing | None = None) -> bytes:
    """The bytes an envelope holds (``data`` itself when it is no envelope); :class:`SealedObjectError` naming
    ``name`` and the reason when it cannot be opened: no key, a key the ring lacks, a truncated or changed object."""
    if not is_sealed(data):
        return data
    if len(data) < _MIN:
        raise SealedObjectError(f"{name}: encrypted object is truncated ({len(data)} bytes); it cannot be read")
    if data[len(MAGIC)] != VERSION:
        raise SealedObjectError(
            f"{name}: encrypted with format version {data[len(MAGIC)]}, this ferry reads version {VERSION}; upgrade"
        )
    ring = ring if ring is not None else keyring()
    wanted = data[len(MAGIC) + 1 : HEADER]
    if ring is None:
        raise SealedObjectError(
            f"{name}: the object is encrypted (key id {wanted.hex()}); set {KEY_FILE_VARIABLE} to its key file"
        )
    kek = ring.find(wanted)
    if kek is None:
        raise SealedObjectError(
            f"{name}: encrypted with key id {wanted.hex()}, which {ring.source} does not hold (it has "
            f"{', '.join(ring.ids())}); wrong key file?"
        )
    header, wrapped = data[:HEADER], data[HEADER : HEADER + _WRAPPED]
    nonce, body = data[HEADER + _WRAPPED : HEADER + _WRAPPED + _NONCE], data[HEADER + _WRAPPED + _NONCE :]
    try:
        data_key = AESGCM(kek).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], header)
        return AESGCM(data_key).decrypt(nonce, body, header + wrapped)
    except InvalidTag:
        raise SealedObjectError(
            f"{name}: encrypted object fails authentication (truncated, damaged or changed); it cannot be read"
        ) from None


def seal_line(line: bytes, *, ring: KeyRing | None = None) -> bytes:
    """One line of a write-ahead file (without its newline), sealed on its own when encryption is on."""
    ring = ring if ring is not None else sealing()
    if ring is None:
        return line
    return LINE_PREFIX + base64.b64encode(seal(line, ring=ring))


def line_envelope(line: bytes, *, name: str = "line") -> bytes:
    """The envelope a sealed line holds; :class:`SealedObjectError` when it is not base64."""
    try:
        return base64.b64decode(line.rstrip(b"\r\n")[len(LINE_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SealedObjectError(f"{name}: an encrypted line is damaged (not base64); it cannot be read") from None


def unseal_line(line: bytes, *, name: str, ring: KeyRing | None = None) -> bytes:
    """What :func:`seal_line` sealed (a line in clear as it is)."""
    if not line.startswith(LINE_PREFIX):
        return line
    return unseal(line_envelope(line, name=name), name=name, ring=ring)
