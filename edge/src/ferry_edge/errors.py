"""Errors of the device agent, all under :class:`EdgeError`::

EdgeError
├── ConfigError(ValueError)       the agent is not initialised, or its config is wrong
├── BundleRejected(ValueError)    a verified download is still not an acceptable bundle (layout, self-test)
├── InputError(ValueError)        a row does not fit the model's schema; names the field
├── SyncError(RuntimeError)       the repository could not be reached or its metadata did not verify
└── NoModel(LookupError)          no model is installed yet
"""

from __future__ import annotations


class EdgeError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(EdgeError, ValueError):
    pass


class BundleRejected(EdgeError, ValueError):
    pass


class InputError(EdgeError, ValueError):
    def __init__(self, field: str, reason: str, *, row: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.row = row
        where = f"row {row}: " if row is not None else ""
        super().__init__(f"{where}field {field!r}: {reason}")


class SyncError(EdgeError, RuntimeError):
    pass


class NoModel(EdgeError, LookupError):
    pass
