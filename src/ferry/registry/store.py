"""The model registry: immutable, content-addressed versions and the channel pointers that select them.

Layout under the registry root (a local directory or any fsspec URL)::

    models/<model>/versions/<version_id>/   immutable: the registered files plus manifest.json
    models/<model>/channels.json            {"online/champion": {"version", "history", "moved_at", "audit_head"}}
    models/<model>/audit.jsonl              append-only, hash-chained records of every move (see ferry.registry.audit)
    models/<model>/audit.head.json          the log's last record and channels.json, signed (ferry.registry.signing)
    models/<model>/.lock                    serialises promotions and rollbacks of one model

A version id is the first 16 hex characters of a sha256 over the names and hashes of the files that define what the
model computes (``model.onnx``, ``schema.json``, ``lineage.json``), so registering the same model twice gives the same
id and keeps the first copy. Channel moves happen under the model's lock and re-read both files inside it, so
concurrent promotions are serialised and every one of them is recorded.

One concept kept whole (about 650 lines): :class:`Registry` is one object whose reads, registration and
channel moves share the same storage handle, lock and manifest checks.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferry import storage
from ferry.errors import AuditError, ChannelError, ConfigError, PromotionRefused, RegistryError, VersionNotFound
from ferry.registry import layout, signing
from ferry.registry.audit import (
    AuditRecord,
    AuditReport,
    ChannelState,
    GateRef,
    Move,
    apply_record,
    check_log,
    dump_channels,
    make_record,
    parse_channels,
    parse_log,
    replay,
)
from ferry.registry.versions import (
    ARTIFACT_RULE,
    CONTENT_FILES,
    GATE_REPORT,
    MANIFEST,
    MODEL_RULE,
    VERSION_ID_RULE,
    VERSION_PREFIX_RULE,
    FileEntry,
    ModelVersion,
    _check_channel,
    _check_model,
    _check_reason,
    _now,
    version_id,
)
from ferry.settings import AuditSettings, StorageSettings
from ferry.storage import sealed

if TYPE_CHECKING:
    from ferry.schema import Schema

__all__ = ["Registry"]


class Registry:
    """Model versions, channel pointers and the audit log under one root URL. Constructing it does no I/O.

    ``storage_options`` (default: ``FERRY_STORAGE_OPTIONS``) go to fsspec; ``lock_lease_s`` (default:
    ``FERRY_LOCK_LEASE_S``) is how long a crashed promotion's lock blocks others on an object store.
    """

    def __init__(
        self,
        url: str,
        *,
        storage_options: dict[str, Any] | None = None,
        lock_timeout_s: float = 30.0,
        lock_lease_s: float | None = None,
        actor: str | None = None,
    ) -> None:
        if not lock_timeout_s > 0:
            raise RegistryError(f"lock_timeout_s must be positive, got {lock_timeout_s!r}")
        self.url = url
        self.lock_timeout_s = lock_timeout_s
        self.lock_lease_s = lock_lease_s
        # None: the configured options (FERRY_STORAGE_OPTIONS), so that every process and flow task that opens
        # the registry by its URL reaches it the same way.
        self._storage_options = dict(StorageSettings().storage_options if storage_options is None else storage_options)
        self._actor = actor
        self._opened: tuple[Any, str] | None = None

    @classmethod
    def from_settings(cls, settings: StorageSettings | None = None) -> Registry:
        """A registry configured from :class:`~ferry.settings.StorageSettings` (``FERRY_*`` environment)."""
        s = settings or StorageSettings()
        return cls(
            s.registry_url,
            storage_options=s.storage_options,
            lock_timeout_s=s.lock_timeout_s,
            lock_lease_s=s.lock_lease_s,
            actor=s.resolved_actor(),
        )

    def __repr__(self) -> str:
        return f"Registry({self.url!r})"

    # -- paths -------------------------------------------------------------------------------------------------

    @property
    def _fs(self) -> Any:
        return self._open()[0]

    def _open(self) -> tuple[Any, str]:
        if self._opened is None:
            fs, root = storage.open_fs(self.url, self._storage_options)
            storage.check_reachable(fs, root, self.url)
            self._opened = fs, root
        return self._opened

    def open_store(self) -> tuple[Any, str]:
        """``(filesystem, root)`` of the registry, opened with its storage options (and checked once on an object
        store); modules that read registry files beside the versions (status, monitor) open it through this."""
        return self._open()

    def _lock(self, model: str) -> Any:
        return storage.lock(
            self._fs, layout.lock_file(self._root, model), self.lock_timeout_s, lease_s=self.lock_lease_s
        )

    @property
    def _root(self) -> str:
        return str(self._open()[1])

    def _version_dir(self, model: str, vid: str) -> str:
        return layout.version_dir(self._root, model, vid)

    def _read_text(self, path: str) -> str | None:
        try:
            return storage.read_bytes(self._fs, path).decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def _list_dirs(self, path: str) -> list[str]:
        try:
            entries = self._fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        return sorted(str(e["name"]).rstrip("/").rpartition("/")[2] for e in entries if e.get("type") == "directory")

    # -- versions ----------------------------------------------------------------------------------------------

    def register(self, model: str, files: Mapping[str, Path], info: Mapping[str, Any]) -> ModelVersion:
        """Store a new immutable version of ``model`` and return it; the same content again returns the first copy.

        ``files`` maps artifact names (``model.onnx``, ``schema.json``, ...) to local paths; ``info`` is any
        JSON-able dict (metrics, ``{"gate": {"passed": bool, ...}}``, lineage, params). Files are staged in a
        temporary directory and renamed into ``versions/<id>`` with ``manifest.json``, so a version is either
        complete or absent.
        """
        _check_model(model)
        if not files:
            raise RegistryError("files is empty: register needs at least the model's artifacts (e.g. model.onnx)")
        blobs: dict[str, bytes] = {}
        for name, path in sorted(files.items()):
            if not isinstance(name, str) or not ARTIFACT_RULE.fullmatch(name) or name == MANIFEST:
                raise RegistryError(
                    f"artifact name {name!r} in files is invalid: use a plain file name matching "
                    f"{ARTIFACT_RULE.pattern}, not {MANIFEST!r}"
                )
            try:
                blobs[name] = Path(path).read_bytes()
            except OSError as exc:
                raise RegistryError(f"cannot read files[{name!r}] from {str(path)!r}: {exc}") from exc
        # a file encrypted at rest is stored as it is; the manifest holds the sha256 of what it holds, so the
        # version id stays the same whether and under which key its files are encrypted
        plain = {name: sealed.unseal(data, name=str(files[name])) for name, data in blobs.items()}
        try:
            info_plain = json.loads(json.dumps(dict(info), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise RegistryError(
                f"info is not JSON-serialisable ({exc}); use dicts, lists, strings, finite numbers, booleans and None"
            ) from exc
        entries = {name: FileEntry(storage.sha256_bytes(data), len(data)) for name, data in plain.items()}
        vid = version_id({name: e.sha256 for name, e in entries.items()})
        existing = self._find_existing(model, vid)
        if existing is not None:
            return existing
        version = ModelVersion(id=vid, model=model, created_at=_now(), files=entries, info=info_plain)
        manifest = (json.dumps(version.to_manifest(), indent=2, sort_keys=True) + "\n").encode()
        staging = layout.staging_dir(self._root, model, f"{vid}-{uuid.uuid4().hex}")
        try:
            for name, data in blobs.items():
                storage.atomic_write_bytes(self._fs, f"{staging}/{name}", data)
            storage.atomic_write_bytes(self._fs, f"{staging}/{MANIFEST}", manifest)
            with self._lock(model):
                existing = self._find_existing(model, vid)
                if existing is not None:
                    return existing
                final = self._version_dir(model, vid)
                try:
                    storage.publish_dir(self._fs, staging, final, [*blobs, MANIFEST], marker=MANIFEST)
                except OSError as exc:
                    if not storage.is_local(self._fs):
                        raise  # the store failed; files moved so far stay invisible without their manifest
                    raise RegistryError(
                        f"version directory {final!r} exists without a manifest.json (left by a crashed write?); "
                        f"remove it and register again"
                    ) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                if storage.exists(self._fs, staging):
                    self._fs.rm(staging, recursive=True)
        return version

    def _find_existing(self, model: str, vid: str) -> ModelVersion | None:
        try:
            return self._load(model, vid)
        except VersionNotFound:
            return None

    def _load(self, model: str, vid: str) -> ModelVersion:
        path = f"{self._version_dir(model, vid)}/{MANIFEST}"
        text = self._read_text(path)
        if text is None:
            raise VersionNotFound(
                f"model {model!r} has no version {vid!r}; list them with Registry.versions({model!r})"
            )
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise RegistryError(f"manifest {path} is not valid JSON ({exc}); the version directory is damaged") from exc
        version = ModelVersion.from_manifest(raw, source=path)
        if version.id != vid or version.model != model:
            raise RegistryError(f"manifest {path} names {version.model}/{version.id}; the version directory was moved")
        return version

    def models(self) -> list[str]:
        """Names of all models that have a directory in the registry, sorted."""
        return [m for m in self._list_dirs(layout.models_dir(self._root)) if MODEL_RULE.fullmatch(m)]

    def _version_ids(self, model: str) -> list[str]:
        return [
            v for v in self._list_dirs(layout.model_path(self._root, model, "versions")) if VERSION_ID_RULE.fullmatch(v)
        ]

    def versions(self, model: str) -> list[ModelVersion]:
        """All complete versions of ``model``, oldest first."""
        _check_model(model)
        found = [v for vid in self._version_ids(model) if (v := self._find_existing(model, vid)) is not None]
        return sorted(found, key=lambda v: (v.created_at, v.id))

    def get(self, version: str, *, model: str | None = None) -> ModelVersion:
        """The version with this id or unique id prefix (at least 4 hex characters), in ``model`` or in any model."""
        if not isinstance(version, str) or not VERSION_PREFIX_RULE.fullmatch(version):
            raise RegistryError(
                f"version {version!r} is invalid: give a version id or a prefix of 4 to 16 hex characters"
            )
        if model is not None:
            _check_model(model)
        models = [model] if model is not None else self.models()
        matches = [
            (m, vid)
            for m in models
            for vid in self._version_ids(m)
            if vid.startswith(version) and storage.exists(self._fs, f"{self._version_dir(m, vid)}/{MANIFEST}")
        ]
        if not matches:
            where = f"model {model!r}" if model is not None else f"any model of {self.url!r}"
            raise VersionNotFound(f"no version {version!r} in {where}; list them with Registry.versions(model)")
        if len(matches) > 1:
            names = ", ".join(f"{m}/{vid}" for m, vid in matches)
            raise RegistryError(f"version {version!r} is ambiguous, it matches {names}; give more characters or model=")
        return self._load(*matches[0])

    def _artifact_path(self, v: ModelVersion, name: str) -> str:
        if name not in v.files:
            have = ", ".join(sorted(v.files))
            raise RegistryError(f"version {v.model}/{v.id} has no artifact {name!r}; it has {have}")
        return f"{self._version_dir(v.model, v.id)}/{name}"

    def file_url(self, v: ModelVersion, name: str) -> str:
        """Where artifact ``name`` of ``v`` lives: a local path, or a full fsspec URL elsewhere."""
        path = self._artifact_path(v, name)
        return path if storage.is_local(self._fs) else str(self._fs.unstrip_protocol(path))

    def version_url(self, v: ModelVersion) -> str:
        """Where the directory of ``v`` lives: a local path, or a full fsspec URL elsewhere."""
        path = self._version_dir(v.model, v.id)
        return path if storage.is_local(self._fs) else str(self._fs.unstrip_protocol(path))

    def schema(self, v: ModelVersion) -> Schema:
        """The schema ``v`` was trained on (its ``schema.json``, checked against the manifest like any artifact)."""
        from ferry.schema import Schema

        return Schema.from_dict(json.loads(self.read_bytes(v, "schema.json")), source=f"{v.model}/{v.id}")

    def read_bytes(self, v: ModelVersion, name: str) -> bytes:
        """The bytes of artifact ``name`` (decrypted when encrypted at rest); RegistryError when they no longer match
        the manifest's sha256."""
        path = self._artifact_path(v, name)
        try:
            data = storage.read_bytes(self._fs, path)
        except FileNotFoundError as exc:
            raise RegistryError(f"artifact {path} is missing; the version is damaged (see verify_version)") from exc
        if storage.sha256_bytes(data) != v.files[name].sha256:
            raise RegistryError(f"artifact {path} changed since it was registered (sha256 differs); do not use it")
        return data

    def redact(self, v: ModelVersion, name: str, data: bytes) -> ModelVersion:
        """Replace artifact ``name`` of ``v`` with ``data`` that holds less (an erasure), under the model's lock; the
        manifest gets the new sha256, so the version stays verifiable. Only files outside the version id may be
        redacted (not ``model.onnx``, ``schema.json`` or ``lineage.json``)."""
        if name not in v.files or name in CONTENT_FILES or name == MANIFEST:
            raise RegistryError(f"{name!r} of {v.model}/{v.id} cannot be redacted (it is missing or defines the id)")
        with self._lock(v.model):
            current = self._load(v.model, v.id)
            files = {**current.files, name: FileEntry(storage.sha256_bytes(data), len(data))}
            redacted = ModelVersion(
                id=current.id, model=current.model, created_at=current.created_at, files=files, info=current.info
            )
            storage.atomic_write_sealed(self._fs, self._artifact_path(current, name), data)
            manifest = (json.dumps(redacted.to_manifest(), indent=2, sort_keys=True) + "\n").encode()
            storage.atomic_write_bytes(self._fs, f"{self._version_dir(v.model, v.id)}/{MANIFEST}", manifest)
        return redacted

    def verify_version(self, v: ModelVersion) -> list[str]:
        """Names of files that are missing or whose sha256 differs from the manifest; empty when intact.

        ``manifest.json`` is listed too when the stored manifest differs from ``v`` or its hashes no longer give
        the version id.
        """
        bad: list[str] = []
        for name, entry in sorted(v.files.items()):
            try:
                data = storage.read_bytes(self._fs, f"{self._version_dir(v.model, v.id)}/{name}")
            except FileNotFoundError:
                bad.append(name)
                continue
            if storage.sha256_bytes(data) != entry.sha256:
                bad.append(name)
        try:
            stored = self._load(v.model, v.id)
            intact = stored.to_manifest() == v.to_manifest()
        except RegistryError:
            intact = False
        if not intact or version_id({n: e.sha256 for n, e in v.files.items()}) != v.id:
            bad.append(MANIFEST)
        return bad

    # -- channels ----------------------------------------------------------------------------------------------

    def channels(self, model: str) -> dict[str, ChannelState]:
        """Every channel of ``model`` and where it points."""
        _check_model(model)
        path = layout.channels_file(self._root, model)
        try:
            return parse_channels(self._read_text(path), source=path)
        except ValueError as exc:
            raise RegistryError(f"{path} is unreadable ({exc}); run verify_audit({model!r})") from exc

    def channel(self, model: str, channel: str) -> str | None:
        """The version id ``channel`` of ``model`` points to, or None when it was never set."""
        _check_channel(channel)
        state = self.channels(model).get(channel)
        return state.version if state else None

    def promote(
        self,
        version: str,
        channel: str,
        *,
        reason: str,
        model: str | None = None,
        force: bool = False,
        actor: str | None = None,
    ) -> AuditRecord:
        """Point ``channel`` at ``version`` and append the audit record, which is returned.

        Refuses (PromotionRefused) a version whose ``info["gate"]["passed"]`` is not True unless ``force``; a forced
        promotion says so in its record. Refuses (ChannelError) when the channel already points there, and
        (RegistryError) when the version's files no longer match its manifest.
        """
        _check_channel(channel)
        why = _check_reason(reason)
        v = self._checked_for_promotion(version, model, force)
        return self._move(v.model, channel, v.id, why, force, actor)

    def release(
        self,
        version: str,
        channels: list[str],
        *,
        reason: str,
        model: str | None = None,
        force: bool = False,
        actor: str | None = None,
        prepare: Callable[[ModelVersion], None] | None = None,
    ) -> AuditRecord:
        """Point every channel of ``channels`` at ``version`` as ONE audit record (action ``release``), under the
        model's lock: every channel moves or none does. The same refusals as :meth:`promote`, for any channel.

        ``prepare`` runs under the lock after every check and before anything is written (the edge bundle is built
        there), so a failure in it moves nothing. The same release again, right after it (every channel already
        there by the log's last record), returns that record and completes its writes instead of refusing: a release
        killed after its record was written is finished by running it again.
        """
        if not channels or len(set(channels)) != len(channels):
            raise ChannelError(f"channels {channels!r}: name at least one channel, each once")
        for channel in channels:
            _check_channel(channel)
        why = _check_reason(reason)
        v = self._checked_for_promotion(version, model, force)
        who = actor or self._actor or StorageSettings().resolved_actor()

        def build(
            last: AuditRecord | None, state: dict[str, ChannelState]
        ) -> tuple[list[AuditRecord], dict[str, ChannelState]]:
            if last is not None and last.action == "release" and last.to_version == v.id and last.channels == channels:
                if prepare is not None:
                    prepare(v)
                resumed.append(last)
                return [], state
            moves = []
            for channel in channels:
                current = state.get(channel)
                if current is not None and current.version == v.id:
                    raise ChannelError(f"channel {channel!r} of {v.model!r} already points to {v.id}; nothing to do")
                moves.append(Move(channel, current.version if current else None, v.id))
            if prepare is not None:
                prepare(v)
            record = make_record(
                last, ts=_now(), actor=who, action="release", model=v.model, channel=",".join(channels),
                from_version=None, to_version=v.id, reason=why, forced=force, gate=self._gate_ref(v),
                moves=tuple(moves),
            )  # fmt: skip
            return [record], apply_record(state, record)

        resumed: list[AuditRecord] = []
        new = self._append(v.model, f"release to {', '.join(channels)}", build)
        return new[0] if new else resumed[0]

    def rollback_release(self, release: AuditRecord, *, reason: str, actor: str | None = None) -> AuditRecord:
        """Move every channel of ``release`` (a ``release`` record) back to where it was before it, as ONE audit
        record (action ``release-rollback``), under the model's lock. ChannelError when a channel of it has moved
        since (a release rolled back already has) or pointed nowhere before it."""
        if release.action != "release":
            raise ChannelError(f"audit record {release.seq} of {release.model!r} is a {release.action}, not a release")
        why = _check_reason(reason)
        who = actor or self._actor or StorageSettings().resolved_actor()

        def build(
            last: AuditRecord | None, state: dict[str, ChannelState]
        ) -> tuple[list[AuditRecord], dict[str, ChannelState]]:
            moves = []
            for move in release.moves:
                now = state.get(move.channel)
                if now is None or now.version != move.to_version:
                    raise ChannelError(
                        f"channel {move.channel!r} moved since the release in audit record {release.seq} (it "
                        f"points to {now.version if now else None}, the release set {move.to_version}); roll it "
                        f"back on its own"
                    )
                if move.from_version is None or not now.history:
                    raise ChannelError(
                        f"channel {move.channel!r} pointed nowhere before the release in audit record "
                        f"{release.seq}; there is nothing to go back to"
                    )
                moves.append(Move(move.channel, now.version, now.history[-1]))
            targets = {m.to_version for m in moves}
            record = make_record(
                last, ts=_now(), actor=who, action="release-rollback", model=release.model, channel=release.channel,
                from_version=release.to_version, to_version=targets.pop() if len(targets) == 1 else "", reason=why,
                forced=False, gate=GateRef(), moves=tuple(moves),
            )  # fmt: skip
            return [record], apply_record(state, record)

        return self._append(release.model, f"roll back the release of {release.channel}", build)[0]

    def _checked_for_promotion(self, version: str, model: str | None, force: bool) -> ModelVersion:
        """The version to promote: refused when its gate did not pass (unless ``force``) or its files are damaged."""
        v = self.get(version, model=model)
        if v.gate_passed is not True and not force:
            raise PromotionRefused(
                f"version {v.model}/{v.id} did not pass its gate (gate.passed is {v.gate_passed}); fix the candidate, "
                f"or pass force=True with a reason to override (the override is recorded)"
            )
        damaged = self.verify_version(v)
        if damaged:
            raise RegistryError(
                f"version {v.model}/{v.id} is damaged ({', '.join(damaged)} differ from the manifest); register again"
            )
        return v

    def rollback(self, channel: str, *, model: str, reason: str = "rollback", actor: str | None = None) -> AuditRecord:
        """Point ``channel`` back at the version it had before its last move; ChannelError when there is none."""
        _check_model(model)
        _check_channel(channel)
        return self._move(model, channel, None, _check_reason(reason), False, actor)

    def _gate_ref(self, v: ModelVersion) -> GateRef:
        entry = v.files.get(GATE_REPORT)
        report = f"{layout.version_dir('', v.model, v.id)}/{GATE_REPORT}" if entry else None
        return GateRef(passed=v.gate_passed, report=report, sha256=entry.sha256 if entry else None)

    def _move(
        self, model: str, channel: str, target: str | None, reason: str, forced: bool, actor: str | None
    ) -> AuditRecord:
        """Append one channel move's record and move the pointer (:meth:`_append`): to ``target``, or with None
        back to the channel's previous version. Nothing is written when the move is refused."""
        who = actor or self._actor or StorageSettings().resolved_actor()

        def build(
            last: AuditRecord | None, state: dict[str, ChannelState]
        ) -> tuple[list[AuditRecord], dict[str, ChannelState]]:
            current = state.get(channel)
            if target is not None:
                if current is not None and current.version == target:
                    raise ChannelError(f"channel {channel!r} of {model!r} already points to {target}; nothing to do")
                to = target
            elif current is None or not current.history:
                raise ChannelError(f"channel {channel!r} of {model!r} has nothing to roll back to")
            else:
                to = current.history[-1]
            record = make_record(
                last, ts=_now(), actor=who, action="promote" if target is not None else "rollback", model=model,
                channel=channel, from_version=current.version if current else None, to_version=to, reason=reason,
                forced=forced, gate=self._gate_ref(self._load(model, to)),
            )  # fmt: skip
            return [record], apply_record(state, record)

        return self._append(model, f"move {channel!r}", build)[0]

    def record_erasure(
        self, model: str, subject: str, counts: Mapping[str, int], *, actor: str | None = None
    ) -> AuditRecord:
        """Append an erasure to ``model``'s audit log: who, when, the subject's keyed hash (never the id) and the rows
        removed per place. It moves no channel (see :func:`ferry.governance.forget`)."""
        _check_model(model)
        removed = ", ".join(f"{place} {n}" for place, n in sorted(counts.items())) or "nothing"
        why = _check_reason(f"erasure of subject hmac-sha256:{subject}: removed {removed}")
        who = actor or self._actor or StorageSettings().resolved_actor()

        def build(
            last: AuditRecord | None, state: dict[str, ChannelState]
        ) -> tuple[list[AuditRecord], dict[str, ChannelState]]:
            record = make_record(
                last, ts=_now(), actor=who, action="erase", model=model, channel="", from_version=None,
                to_version="", reason=why, forced=False, gate=GateRef(),
            )  # fmt: skip
            return [record], state

        return self._append(model, "record an erasure", build)[0]

    def _append(
        self,
        model: str,
        action: str,
        build: Callable[
            [AuditRecord | None, dict[str, ChannelState]], tuple[list[AuditRecord], dict[str, ChannelState]]
        ],
    ) -> list[AuditRecord]:
        """Under the model's lock, re-reading everything inside it: check the log, its pointers and its signed head;
        ``build`` makes the new records from the last one and the pointers; they reach the log in one atomic write
        (all or none), then the pointers follow (the log is the truth: a write that stopped between the two is
        completed by the next one) and the head is signed again. Nothing is written when ``build`` raises; when it
        returns no record, the pointers and the head are brought up to the log as it is."""
        log_path = layout.audit_file(self._root, model)
        channels_path = layout.channels_file(self._root, model)
        with self._lock(model):
            log_text = self._read_text(log_path) or ""
            records, report = check_log(log_text, self._read_text(channels_path), model=model)
            if not report.ok and not report.repairable:
                raise AuditError(
                    f"refusing to {action} of {model!r}: {report.problem}. Investigate with "
                    f"verify_audit({model!r}) and restore audit.jsonl/channels.json from a backup"
                )
            key = self._audit_key()
            head = self._read_raw(layout.audit_head_file(self._root, model))
            signing.guard(head, model, records, self._read_raw(channels_path), key, action=action)
            new, state = build(records[-1] if records else None, replay(records))
            if new:
                if log_text and not log_text.endswith("\n"):
                    log_text += "\n"
                lines = "".join(r.to_line() for r in new)
                storage.atomic_write_bytes(self._fs, log_path, (log_text + lines).encode())
            channels = dump_channels(state)
            if new or channels != self._read_raw(channels_path):
                storage.atomic_write_bytes(self._fs, channels_path, channels)
            last = new[-1] if new else (records[-1] if records else None)
            if key is not None and last is not None:
                head_path = layout.audit_head_file(self._root, model)
                storage.atomic_write_bytes(self._fs, head_path, signing.make_head(model, last, channels, key))
        return new

    def _read_raw(self, path: str) -> bytes | None:
        try:
            return storage.read_bytes(self._fs, path)
        except FileNotFoundError:
            return None

    def _audit_key(self) -> Any:
        """The audit signing key (FERRY_AUDIT_KEY_FILE), refused when it lies inside this (local) registry."""
        root = self._root if storage.is_local(self._fs) else None
        return signing.load_private(AuditSettings(), registry_root=root)

    # -- audit -------------------------------------------------------------------------------------------------

    def audit(self, model: str) -> list[AuditRecord]:
        """Every audit record of ``model``, oldest first; AuditError when a line cannot be parsed.

        This does not check the hash chain; use :meth:`verify_audit` for that.
        """
        _check_model(model)
        path = layout.audit_file(self._root, model)
        return parse_log(self._read_text(path) or "", source=path)

    def verify_audit(self, model: str) -> AuditReport:
        """Check the hash chain of ``model``'s audit log, that ``channels.json`` agrees with it, and, when an audit
        key is configured (:class:`~ferry.settings.AuditSettings`), the signed head against both (never raises for
        bad content; the report names the first bad line, channel or the head). ConfigError for an unusable key."""
        _check_model(model)
        log_text = self._read_text(layout.audit_file(self._root, model))
        channels = self._read_raw(layout.channels_file(self._root, model))
        channels_text = channels.decode("utf-8", errors="replace") if channels is not None else None
        records, report = check_log(log_text, channels_text, model=model)
        head = self._read_raw(layout.audit_head_file(self._root, model))
        return signing.with_head(report, records, head, channels, model, signing.load_public(AuditSettings()))

    def sign_audit(self, model: str) -> AuditReport:
        """Sign the head of a log whose chain and pointers check out (adopting signing on an existing registry,
        or after an investigation); AuditError when they do not, ConfigError without FERRY_AUDIT_KEY_FILE."""
        _check_model(model)
        key = self._audit_key()
        if key is None:
            raise ConfigError("set FERRY_AUDIT_KEY_FILE to the audit signing key (outside the registry) to sign")
        with self._lock(model):
            channels = self._read_raw(layout.channels_file(self._root, model))
            channels_text = channels.decode("utf-8", errors="replace") if channels is not None else None
            log_text = self._read_text(layout.audit_file(self._root, model))
            records, report = check_log(log_text, channels_text, model=model)
            if not report.ok or not records:
                raise AuditError(f"refusing to sign the audit log of {model!r}: {report.problem or 'it is empty'}")
            head = signing.make_head(model, records[-1], channels or b"", key)
            storage.atomic_write_bytes(self._fs, layout.audit_head_file(self._root, model), head)
        return replace(report, signed=True)
