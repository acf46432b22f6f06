"""The model registry: immutable versions, the channel pointers that select them, and the audit log of every move.

| module | what lives there |
|---|---|
| :mod:`~ferry.registry.layout` | every path under ``models/<model>/``: the one place that spells them |
| :mod:`~ferry.registry.versions` | :class:`ModelVersion`, content-addressed ids, the naming rules |
| :mod:`~ferry.registry.store` | :class:`Registry`: register versions, move channels under a lock, read files |
| :mod:`~ferry.registry.audit` | the hash-chained audit log and its check against the channel pointers |
| :mod:`~ferry.registry.signing` | the audit log's ed25519-signed head: making, checking, guarding the next move |
| :mod:`~ferry.registry.release` | one version to several channels at once as one audit record, and its rollback |

The audit module's parsing and checking functions are its own surface (``ferry.registry.audit``); the records and
reports callers receive are re-exported here.
"""

from __future__ import annotations

from ferry.registry import layout
from ferry.registry.audit import AuditRecord, AuditReport, ChannelState, GateRef
from ferry.registry.store import Registry
from ferry.registry.versions import FileEntry, ModelVersion, version_id

__all__ = [
    "AuditRecord",
    "AuditReport",
    "ChannelState",
    "FileEntry",
    "GateRef",
    "ModelVersion",
    "Registry",
    "layout",
    "version_id",
]
