"""The signed head of an audit log: an ed25519 signature over the log's last record and ``channels.json``.

A hash chain and the channel heads catch any edit, removal or reordering inside the log, but someone who can write
the registry can still cut records off its end and rewrite ``channels.json`` to match, or write a whole new log. So
after every move the registry writes ``models/<model>/audit.head.json``::

    {"model", "seq", "hash", "channels_sha256", "signed_at", "key_id", "signature"}

``seq`` and ``hash`` name the log's last record, ``channels_sha256`` is the sha256 of ``channels.json`` as written,
``key_id`` the first 16 hex digits of the sha256 of the raw public key, and ``signature`` the hex ed25519 signature
of the canonical JSON of every other field. Without the private key nobody can write a head that verifies, so a
truncated or rewritten log no longer matches its head.

The private key is a PEM file outside the registry (``FERRY_AUDIT_KEY_FILE``, created with mode 0600 by the first
move that needs it); a key file inside a local registry is refused. Checking needs only the public key
(``FERRY_AUDIT_PUBLIC_KEY_FILE``, by default the ``.pub`` file written beside the private key): give auditors that
file, not the registry's word. A head older than its log by exactly one record is what a move that stopped before
signing leaves; the next move signs again. A head and a log restored together from an older backup both verify:
the head proves who wrote the log, not that it is the newest one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ferry import storage
from ferry.errors import AuditError, ConfigError
from ferry.registry.audit import AuditRecord, AuditReport, canonical_json
from ferry.settings import AuditSettings

__all__ = ["HeadCheck", "check_head", "guard", "key_id", "load_private", "load_public", "make_head", "with_head"]


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _inside(path: Path, registry_root: str | None) -> bool:
    if registry_root is None:
        return False
    root = Path(registry_root).resolve()
    return path.resolve().is_relative_to(root)


def load_private(settings: AuditSettings, *, registry_root: str | None = None) -> Ed25519PrivateKey | None:
    """The signing key of ``settings`` (None when signing is off); made, with its ``.pub`` beside it, when the file
    does not exist. ConfigError when the file is inside the registry or is not an unencrypted ed25519 PEM key."""
    if settings.key_file is None:
        return None
    path = Path(settings.key_file)
    if _inside(path, registry_root):
        raise ConfigError(
            f"FERRY_AUDIT_KEY_FILE {path} is inside the registry: anyone who can rewrite the log could then sign it; "
            f"keep the key elsewhere"
        )
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fs = storage.local_fs()
        os.makedirs(path.parent, exist_ok=True)
        storage.atomic_write_bytes(fs, str(path), pem, mode=0o600)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        storage.atomic_write_bytes(fs, f"{path}.pub", public)
        return key
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"FERRY_AUDIT_KEY_FILE {path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(f"FERRY_AUDIT_KEY_FILE {path} holds a {type(loaded).__name__}, not an ed25519 key")
    return loaded


def load_public(settings: AuditSettings) -> Ed25519PublicKey | None:
    """The key that checks heads: ``public_key_file``, else the ``.pub`` beside ``key_file``; None when neither is
    set (heads are then not checked). ConfigError when the file is missing or not an ed25519 PEM public key."""
    if settings.public_key_file is not None:
        path = Path(settings.public_key_file)
    elif settings.key_file is not None:
        path = Path(f"{settings.key_file}.pub")
        if not path.exists():  # derive it from the private key, never make one here
            private = load_private(settings) if Path(settings.key_file).exists() else None
            return private.public_key() if private is not None else None
    else:
        return None
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"audit public key {path} cannot be read as a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"audit public key {path} is a {type(key).__name__}, not an ed25519 key")
    return key


def make_head(model: str, last: AuditRecord, channels: bytes, key: Ed25519PrivateKey) -> bytes:
    """The bytes of ``audit.head.json`` for a log ending with ``last`` and its ``channels.json`` bytes."""
    body = {
        "model": model,
        "seq": last.seq,
        "hash": last.hash,
        "channels_sha256": hashlib.sha256(channels).hexdigest(),
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "key_id": key_id(key.public_key()),
    }
    signed = {**body, "signature": key.sign(canonical_json(body)).hex()}
    return (json.dumps(signed, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class HeadCheck:
    """``problem`` is empty when the head verifies and names the log's state; ``lags`` when the head is one record
    behind a log whose chain is intact (a move stopped before signing; the next move signs again)."""

    problem: str = ""
    lags: bool = False

    @property
    def ok(self) -> bool:
        return not self.problem


def check_head(
    head: bytes | None, model: str, records: list[AuditRecord], channels: bytes | None, public: Ed25519PublicKey
) -> HeadCheck:
    """Check a head against the log's (chain-checked) records and the ``channels.json`` bytes."""
    if head is None:
        if not records:
            return HeadCheck()
        return HeadCheck(
            f"the audit log has {len(records)} records but no signed head (audit.head.json): the head was removed, "
            f"or the log was written without FERRY_AUDIT_KEY_FILE"
        )
    try:
        obj = json.loads(head)
        body = {k: obj[k] for k in ("model", "seq", "hash", "channels_sha256", "signed_at", "key_id")}
        signature = bytes.fromhex(obj["signature"])
    except (ValueError, KeyError, TypeError) as exc:
        return HeadCheck(f"audit.head.json is not a signed head ({type(exc).__name__}: {exc})")
    if body["key_id"] != key_id(public):
        return HeadCheck(
            f"audit.head.json was signed by key {body['key_id']!r}, not by the audit key {key_id(public)!r}"
        )
    try:
        public.verify(signature, canonical_json(body))
    except InvalidSignature:
        return HeadCheck("the signature of audit.head.json does not verify: the head was forged or edited")
    if body["model"] != model:
        return HeadCheck(f"audit.head.json is the head of model {body['model']!r}, not of {model!r}")
    n = len(records)
    last = records[-1] if records else None
    if last is not None and (body["seq"], body["hash"]) == (last.seq, last.hash):
        if channels is None or hashlib.sha256(channels).hexdigest() != body["channels_sha256"]:
            return HeadCheck("channels.json is not the one the signed head was written with")
        return HeadCheck()
    for at, record in enumerate(records[:-1]):
        if (body["seq"], body["hash"]) != (record.seq, record.hash):
            continue
        tail = records[at + 1 :]
        if len({(r.actor, r.reason) for r in tail}) == 1:  # the records of one write: a move or a release
            return HeadCheck(
                f"the signed head names record {record.seq}, before the log's last ({n}), which one move or release "
                f"wrote: a move stopped before it signed; the next promotion or rollback signs again",
                lags=True,
            )
    return HeadCheck(
        f"the signed head names record {body['seq']} ({str(body['hash'])[:12]}...), but the log "
        + (f"ends at record {n} ({last.hash[:12]}...)" if last else "is empty")
        + ": the log was truncated or rewritten"
    )


def guard(
    head: bytes | None,
    model: str,
    records: list[AuditRecord],
    channels: bytes | None,
    key: Ed25519PrivateKey | None,
    *,
    action: str,
) -> None:
    """Before a move: AuditError unless the head verifies (or lags by the one record of a stopped move), so that a
    truncated or rewritten log is never signed by the next promotion; and AuditError for a move without the key on
    a log that is signed, which would leave its head behind."""
    if key is None:
        if head is not None:
            raise AuditError(
                f"refusing to {action} of {model!r}: its audit log is signed (audit.head.json) and this process has "
                f"no audit key; set FERRY_AUDIT_KEY_FILE to the key that signs it"
            )
        return
    check = check_head(head, model, records, channels, key.public_key())
    if not check.ok and not check.lags:
        raise AuditError(
            f"refusing to {action} of {model!r}: {check.problem}. Investigate with `ferry audit verify`; "
            f"`ferry audit sign` signs a log you have checked"
        )


def with_head(
    report: AuditReport,
    records: list[AuditRecord],
    head: bytes | None,
    channels: bytes | None,
    model: str,
    public: Ed25519PublicKey | None,
) -> AuditReport:
    """``report`` of the chain and pointers, with the signed head checked too when there is a public key."""
    if public is None or not (report.ok or report.repairable):
        return report
    check = check_head(head, model, records, channels, public)
    if check.ok:
        return replace(report, signed=True)
    repairable = report.repairable or check.lags
    return AuditReport(ok=False, n_records=len(records), problem=check.problem, repairable=repairable)
