"""Every error ferry raises on purpose.

All of them derive from :class:`FerryError`, and each also inherits the built-in exception that matches its
meaning, so callers may catch either::

    FerryError
    ├── MissingExtra(ImportError)          an optional extra is not installed; the message names it
    ├── ConfigError(ValueError)            a settings value or config file is wrong
    │   └── EncryptionKeyError             the encryption key file is missing, unreadable or holds a malformed key
    ├── SchemaError(ValueError)            the declared schema file itself is invalid
    ├── DataError(ValueError)              input data cannot be used
    │   ├── DataFormatError                a file or URL is missing, empty, corrupt, unreadable or of an unknown format
    │   ├── DataValidationError            rows break a schema rule; names column, rule and example rows
    │   └── RequestRejected                an online request the service refuses (400/413/422); names the field
    ├── TrainingError(RuntimeError)        the pipeline could not be fitted
    ├── ExportError(RuntimeError)          the pipeline could not be converted to ONNX
    ├── GateError(RuntimeError)            the gate could not reach a verdict (it then fails closed)
    ├── RegistryError(RuntimeError)        the registry storage is unusable or inconsistent
    │   ├── VersionNotFound(LookupError)   no version with that id
    │   ├── ChannelError(ValueError)       bad channel name, nothing to roll back to, or not an edge channel
    │   ├── PromotionRefused(ValueError)   the version's gate did not pass and force was not given
    │   └── LockTimeout(TimeoutError)      another writer held a lock too long; ``holder`` says who when known
    ├── AuditError(ValueError)             the audit log's hash chain is broken
    ├── SealedObjectError(ValueError)      an encrypted object cannot be opened: no key, wrong key, truncated, changed
    ├── BundleError(ValueError)            a version's edge bundle cannot be built (checked before a channel moves)
    ├── BackgroundMissing(LookupError)     a version has no background sample to explain against; names the version
    ├── OutputLocked(RuntimeError)         another batch run is writing the same output; names the holder
    ├── PartitionsFailed(RuntimeError)     some partitions of a batch run failed; the others were scored
    ├── NotReadyError(RuntimeError)        the online service has no model loaded and warmed yet
    ├── BentoNotFound(FileNotFoundError)   `ferry serve` cannot find the online service's directory
    └── ServiceFailed(RuntimeError)        a `bentoml serve` started by ferry exited or never became ready

The last six live beside the code that raises them: :mod:`ferry.batch.output`, :mod:`ferry.batch.run`,
:mod:`ferry.online.records` (``RequestRejected``), :mod:`ferry.online.answer` and :mod:`ferry.cli.processes`.
The device agent has its own tree (``ferry_edge.errors``): it imports nothing of ferry.
"""

from __future__ import annotations


class FerryError(Exception):
    """Root of every error ferry raises on purpose."""


class MissingExtra(FerryError, ImportError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module!r} is not installed; install the {extra!r} extra: pip install 'ferry[{extra}]' "
            f"(or `uv sync --all-extras` in a checkout)"
        )
        self.extra = extra
        self.module = module


class ConfigError(FerryError, ValueError):
    """A setting or a config file has a wrong value."""


class SchemaError(FerryError, ValueError):
    """The declared schema file is itself invalid."""


class DataError(FerryError, ValueError):
    """Input data cannot be used."""


class DataFormatError(DataError):
    """The input file is missing, empty, corrupt or of an unknown format."""


class DataValidationError(DataError):
    """Rows break a schema rule.

    ``column`` and ``rule`` say what was broken; ``examples`` holds a few offending row ids (or row numbers when
    the schema declares no id column) with their values.
    """

    def __init__(self, column: str, rule: str, detail: str, examples: list[str] | None = None) -> None:
        self.column = column
        self.rule = rule
        self.detail = detail
        self.examples = list(examples or [])
        shown = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        super().__init__(f"column {column!r} breaks rule {rule!r}: {detail}{shown}")


class TrainingError(FerryError, RuntimeError):
    """The pipeline could not be fitted."""


class ExportError(FerryError, RuntimeError):
    """The fitted pipeline could not be converted to ONNX."""


class GateError(FerryError, RuntimeError):
    """The gate could not reach a verdict. The gate treats this as a failure (it fails closed)."""


class RegistryError(FerryError, RuntimeError):
    """The registry storage is unusable or inconsistent."""


class VersionNotFound(RegistryError, LookupError):
    """No model version has that id."""


class ChannelError(RegistryError, ValueError):
    """A channel name is malformed, or a channel has nothing to roll back to."""


class PromotionRefused(RegistryError, ValueError):
    """The version's gate did not pass and the promotion was not forced."""


class LockTimeout(RegistryError, TimeoutError):
    """Another writer held a lock for longer than the timeout; ``holder`` is its record (pid, host, since) if known."""

    def __init__(self, message: str, *, holder: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class AuditError(FerryError, ValueError):
    """The audit log's hash chain is broken."""


class EncryptionKeyError(ConfigError):
    """The encryption key file (``FERRY_ENCRYPTION_KEY_FILE``) is missing, unreadable or holds a malformed key."""


class SealedObjectError(FerryError, ValueError):
    """An encrypted object cannot be opened: no key is set, the key file lacks its key, or it was truncated or
    changed. Never answered with wrong data."""


class BackgroundMissing(FerryError, LookupError):
    """A version carries no background sample, so its predictions cannot be explained; the message names the version
    and how to give it one."""


class BundleError(FerryError, ValueError):
    """A version's edge bundle cannot be built: its files cannot be read, or its model does not answer its task on
    the golden rows. Edge channels are checked before they move, so nothing moved."""
