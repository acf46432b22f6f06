"""Model versions: immutable and content-addressed, and the rules names of models, channels and files follow.

A version id is the first 16 hex characters of a sha256 over the names and hashes of the files that define what the
model computes (``model.onnx``, ``schema.json``, ``lineage.json``), so registering the same model twice gives the same
id and keeps the first copy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ferry.errors import ChannelError, RegistryError

__all__ = ["FileEntry", "ModelVersion", "version_id"]


MODEL_RULE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


CHANNEL_RULE = re.compile(r"^[a-z][a-z0-9-]*(/[a-z][a-z0-9-]*)?$")


ARTIFACT_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


VERSION_PREFIX_RULE = re.compile(r"^[0-9a-f]{4,16}$")


VERSION_ID_RULE = re.compile(r"^[0-9a-f]{16}$")


CONTENT_FILES = ("model.onnx", "schema.json", "lineage.json")


MANIFEST = "manifest.json"


GATE_REPORT = "gate.json"


@dataclass(frozen=True)
class FileEntry:
    """A registered file's sha256 and size in bytes, as recorded in the manifest."""

    sha256: str
    size: int


@dataclass(frozen=True)
class ModelVersion:
    """One immutable model version, as described by its ``manifest.json``."""

    id: str
    model: str
    created_at: str
    files: Mapping[str, FileEntry] = field(compare=False)
    info: Mapping[str, Any] = field(compare=False)

    @property
    def gate_passed(self) -> bool | None:
        """``info["gate"]["passed"]`` when it is a boolean, else None (no verdict recorded)."""
        gate = self.info.get("gate")
        passed = gate.get("passed") if isinstance(gate, Mapping) else None
        return passed if isinstance(passed, bool) else None

    def to_manifest(self) -> dict[str, Any]:
        files = {name: {"sha256": e.sha256, "size": e.size} for name, e in sorted(self.files.items())}
        return {"id": self.id, "model": self.model, "created_at": self.created_at, "files": files, "info": self.info}

    @classmethod
    def from_manifest(cls, raw: Any, *, source: str) -> ModelVersion:
        """Build from a parsed manifest; RegistryError naming ``source`` when it is malformed."""
        try:
            files = {str(n): FileEntry(str(e["sha256"]), int(e["size"])) for n, e in raw["files"].items()}
            info = raw["info"]
            if not isinstance(info, dict):
                raise TypeError("info is not an object")
            return cls(
                id=str(raw["id"]), model=str(raw["model"]), created_at=str(raw["created_at"]), files=files, info=info
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"manifest {source} is malformed ({exc!r}); the version directory is damaged") from exc


def version_id(file_hashes: Mapping[str, str]) -> str:
    """The id of a version whose files have these sha256s: only the content files count when any is present."""
    chosen = {n: h for n, h in file_hashes.items() if n in CONTENT_FILES} or dict(file_hashes)
    text = "".join(f"{name}\t{digest}\n" for name, digest in sorted(chosen.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _check_model(model: str) -> None:
    if not isinstance(model, str) or not MODEL_RULE.fullmatch(model):
        raise RegistryError(
            f"model name {model!r} is invalid: it must match {MODEL_RULE.pattern} "
            f"(lowercase letters, digits, '_' and '-', starting with a letter or digit, at most 64 characters)"
        )


def _check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not CHANNEL_RULE.fullmatch(channel):
        raise ChannelError(
            f"channel name {channel!r} is invalid: it must match {CHANNEL_RULE.pattern} "
            f"(e.g. 'batch', 'online/champion', 'edge/stable')"
        )


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise RegistryError("reason is empty: say why the channel moves; it is written to the audit log")
    return reason.strip()
