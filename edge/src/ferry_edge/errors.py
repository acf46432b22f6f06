"""Errors of the device agent, all under :class:`EdgeError`::

EdgeError
├── ConfigError(ValueError)            the agent is not initialised, a setting in config.json is wrong, or
│                                      config.json or state.json cannot be read
├── BundleRejected(ValueError)         a verified download is still not an acceptable bundle (layout, self-test,
│                                      size); kinds ``rejected`` and ``oversize``
├── SelfTestIncomplete(RuntimeError)   the self-test did not complete (a signal, a timeout, the latency budget
│                                      missed under load): not the bundle's fault, so it is retried with backoff
├── InputError(ValueError)             a row does not fit the model's schema; names the field
├── SyncError(RuntimeError)            the repository could not be reached (``unreachable``), its metadata or the
│                                      bundle did not verify (``unverified``), the channel has nothing
│                                      (``unpublished``), or anything else went wrong (``error``)
├── NoModel(LookupError)               no model is installed yet
├── NotExplainable(LookupError)        the installed version's bundle carries no explain.npz; names the version
└── NothingToRetry(LookupError)        ``retry`` was asked for a bundle that is neither rejected nor postponed

Every error a sync raises carries ``kind``, one of :data:`FAILURE_KINDS`; the agent records each failure in
``state.json`` in the same shape whatever its kind (see ``ferry_edge.agent``).
"""

from __future__ import annotations

FAILURE_KINDS = ("unreachable", "unverified", "unpublished", "oversize", "rejected", "selftest-incomplete", "error")
"""Why a sync failed: the repository could not be reached; its metadata or the bundle did not verify; the channel
has no bundle; the bundle is over ``max_bundle_bytes``; the bundle is not acceptable (or was refused before); its
self-test did not complete (retried later); anything else."""


class EdgeError(Exception):
    """Root of every error the agent raises on purpose."""

    kind = "error"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class ConfigError(EdgeError, ValueError):
    pass


class BundleRejected(EdgeError, ValueError):
    kind = "rejected"


class SelfTestIncomplete(EdgeError, RuntimeError):
    kind = "selftest-incomplete"


class InputError(EdgeError, ValueError):
    def __init__(self, field: str, reason: str, *, row: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.row = row
        where = f"row {row}: " if row is not None else ""
        super().__init__(f"{where}field {field!r}: {reason}")


class SyncError(EdgeError, RuntimeError):
    kind = "error"


class NoModel(EdgeError, LookupError):
    pass


class NothingToRetry(EdgeError, LookupError):
    pass


class NotExplainable(EdgeError, LookupError):
    pass
