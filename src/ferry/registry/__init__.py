"""The model registry: immutable versions, the channel pointers that select them, and the audit log of every move.

| module | what lives there |
|---|---|
| :mod:`~ferry.registry.versions` | :class:`ModelVersion`, content-addressed ids, the naming rules |
| :mod:`~ferry.registry.store` | :class:`Registry`: register versions, move channels under a lock, read files |
| :mod:`~ferry.registry.audit` | the hash-chained audit log and its check against the channel pointers |
"""

from __future__ import annotations

from ferry.registry.audit import (
    ZERO_HASH,
    AuditRecord,
    AuditReport,
    ChannelState,
    GateRef,
    apply_record,
    canonical_json,
    check_log,
    dump_channels,
    make_record,
    parse_channels,
    parse_log,
    replay,
    verify_log,
)
from ferry.registry.store import Registry
from ferry.registry.versions import FileEntry, ModelVersion, version_id

__all__ = [
    "ZERO_HASH",
    "AuditRecord",
    "AuditReport",
    "ChannelState",
    "FileEntry",
    "GateRef",
    "ModelVersion",
    "Registry",
    "apply_record",
    "canonical_json",
    "check_log",
    "dump_channels",
    "make_record",
    "parse_channels",
    "parse_log",
    "replay",
    "verify_log",
    "version_id",
]
