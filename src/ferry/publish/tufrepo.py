"""A TUF repository of edge bundles, written with python-tuf's metadata API (``tuf.api``).

Layout at the repository URL (any fsspec URL; a local directory by default), served by any static file host::

    metadata/1.root.json, 2.root.json, ...     every root version (clients walk the chain when keys rotate)
    metadata/<N>.targets.json                  consistent snapshots: every version of targets and snapshot kept
    metadata/<N>.snapshot.json
    metadata/timestamp.json                    the only mutable file, written last
    targets/<model>/<channel>/<sha256>.bundle.tar

Signing keys are ed25519 files in a separate keys directory (never inside the repository): ``<role>.pem``, and
``<role>-2.pem``, ``<role>-3.pem``, ... when a role's threshold asks for more than one signature. They are created
by :meth:`TufRepository.init`; every metadata file is signed by all of its role's keys.

Every publish takes a lock, reads the current metadata, and writes new targets, then
snapshot, then timestamp metadata, each under a new name except ``timestamp.json``, which is replaced atomically
last: a client sees either the old consistent state or the new one, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from ferry import storage
from ferry.errors import ConfigError, RegistryError

__all__ = [
    "DEFAULT_EXPIRY",
    "ROLES",
    "SERIALIZER",
    "KeyStore",
    "PublishResult",
    "TufRepository",
    "check_thresholds",
    "describe",
    "target_name",
]

ROLES = ("root", "targets", "snapshot", "timestamp")
#: How long each role's metadata stays valid. The timestamp is short so devices notice a frozen repository.
DEFAULT_EXPIRY = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=7),
    "timestamp": timedelta(hours=2),  # short: a freeze is noticed once it passes (re-signed every 30 minutes)
}
SERIALIZER = JSONSerializer(compact=False)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _channel_dir(channel: str) -> str:
    return channel.replace("/", "-")


def target_name(model: str, channel: str) -> str:
    """The TUF target a device fetches to follow ``channel`` of ``model``, e.g. ``churn/edge-stable/bundle.tar``."""
    return f"{model}/{_channel_dir(channel)}/bundle.tar"


@dataclass(frozen=True)
class PublishResult:
    target: str
    sha256: str
    length: int
    targets_version: int
    snapshot_version: int
    timestamp_version: int
    changed: bool


class KeyStore:
    """ed25519 signing keys kept as PEM files (mode 0600) in a local directory: slot 1 of a role is ``<role>.pem``,
    slot N is ``<role>-N.pem``. With ``passphrase`` (``FERRY_EDGE_KEY_PASSPHRASE``) they are stored encrypted
    (PKCS#8, the best encryption ``cryptography`` offers), and a key found in clear is encrypted when first loaded."""

    def __init__(self, directory: str | Path, *, passphrase: bytes | None = None) -> None:
        self.directory = Path(directory)
        self.passphrase = passphrase

    def path(self, role: str, slot: int = 1) -> Path:
        return self.directory / (f"{role}.pem" if slot == 1 else f"{role}-{slot}.pem")

    def create(self, role: str, *, slot: int = 1) -> CryptoSigner:
        target = self.path(role, slot)
        if target.exists():
            raise ConfigError(f"key file {target} already exists; refusing to overwrite a signing key")
        signer = CryptoSigner.generate_ed25519()
        self._write(target, signer)
        return signer

    def _write(self, target: Path, signer: CryptoSigner) -> None:
        from cryptography.hazmat.primitives import serialization as ser

        self.directory.mkdir(parents=True, exist_ok=True)
        pem = signer.private_bytes
        if self.passphrase:
            key = ser.load_pem_private_key(pem, password=None)
            pem = key.private_bytes(
                ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(self.passphrase)
            )
        storage.atomic_write_bytes(storage.local_fs(), str(target), pem, mode=0o600)

    def signer(self, role: str, *, slot: int = 1) -> Signer:
        return self._load(self.path(role, slot), role)

    def _load(self, path: Path, role: str) -> Signer:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            pem = path.read_bytes()
        except FileNotFoundError as exc:
            raise ConfigError(f"no signing key for role {role!r} at {path}; initialise the repository first") from exc
        encrypted = b"ENCRYPTED" in pem.split(b"\n", 1)[0]
        if encrypted and not self.passphrase:
            raise ConfigError(
                f"signing key {path} of role {role!r} is encrypted; set FERRY_EDGE_KEY_PASSPHRASE to its passphrase"
            )
        try:
            key = load_pem_private_key(pem, password=self.passphrase if encrypted else None)
        except ValueError as exc:
            if encrypted:
                raise ConfigError(
                    f"signing key {path} of role {role!r}: wrong passphrase (FERRY_EDGE_KEY_PASSPHRASE)"
                ) from None
            raise ConfigError(f"signing key {path} of role {role!r} is not a PEM private key") from exc
        signer = CryptoSigner(key)  # type: ignore[arg-type]
        if self.passphrase and not encrypted:
            self._write(path, signer)  # a key kept in clear until now: stored encrypted from here on
        return signer

    def slots(self, role: str) -> list[int]:
        """The slots of ``role`` that have a key file here, in order."""
        found = [1] if self.path(role).exists() else []
        for p in self.directory.glob(f"{role}-*.pem"):
            number = p.name[len(role) + 1 : -len(".pem")]
            if number.isdigit() and int(number) > 1:
                found.append(int(number))
        return sorted(found)

    def signers(self, role: str) -> list[Signer]:
        return [self.signer(role, slot=n) for n in self.slots(role)]


class TufRepository:
    """Publish bundles as TUF targets and keep the metadata fresh."""

    def __init__(
        self,
        url: str,
        keys: KeyStore,
        *,
        storage_options: dict[str, Any] | None = None,
        expiry: dict[str, timedelta] | None = None,
        thresholds: dict[str, int] | None = None,
        lock_timeout_s: float = 30.0,
    ) -> None:
        self.url = url
        self.keys = keys
        self.expiry = {**DEFAULT_EXPIRY, **(expiry or {})}
        self.thresholds = check_thresholds(thresholds or {})
        self.lock_timeout_s = lock_timeout_s
        self._fs, self._root = storage.open_fs(url, storage_options)

    # -- paths and I/O ---------------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join([self._root.rstrip("/"), *parts])

    def _write_md(self, md: Metadata[Any], name: str) -> None:
        storage.atomic_write_bytes(self._fs, self._path("metadata", name), md.to_bytes(SERIALIZER))

    def _read_md(self, name: str) -> Metadata[Any]:
        try:
            return Metadata.from_bytes(storage.read_bytes(self._fs, self._path("metadata", name)))
        except FileNotFoundError as exc:
            raise RegistryError(f"TUF repository {self.url} has no metadata/{name}; run init_repository") from exc

    def root_version(self) -> int:
        try:
            names = [str(p).rpartition("/")[2] for p in self._fs.ls(self._path("metadata"), detail=False)]
        except FileNotFoundError:
            return 0
        versions = [int(n.split(".")[0]) for n in names if n.endswith(".root.json") and n.split(".")[0].isdigit()]
        return max(versions, default=0)

    def _lock(self) -> Any:
        return storage.lock(self._fs, self._path(".publish.lock"), self.lock_timeout_s)

    def _expires(self, role: str) -> datetime:
        return _now() + self.expiry[role]

    # -- lifecycle -------------------------------------------------------------------------------------------

    def init(self) -> None:
        """Create keys (when absent) and version 1 of every role. Refuses to run on an existing repository."""
        with self._lock():
            if self.root_version() > 0:
                raise ConfigError(f"{self.url} already holds a TUF repository; it is initialised once")
            signers = {r: self._signers_or_create(r, self.thresholds[r]) for r in ROLES}
            root = Root(expires=self._expires("root"), consistent_snapshot=True)
            for role, keys in signers.items():
                for signer in keys:
                    root.add_key(signer.public_key, role)
                root.roles[role].threshold = self.thresholds[role]
            md_root: Metadata[Root] = Metadata(root)
            md_targets: Metadata[Targets] = Metadata(Targets(expires=self._expires("targets")))
            md_snapshot: Metadata[Snapshot] = Metadata(Snapshot(expires=self._expires("snapshot")))
            md_timestamp: Metadata[Timestamp] = Metadata(Timestamp(expires=self._expires("timestamp")))
            for role, md in (("root", md_root), ("targets", md_targets), ("snapshot", md_snapshot)):
                for signer in signers[role]:
                    md.sign(signer, append=True)
            for signer in signers["timestamp"]:
                md_timestamp.sign(signer, append=True)
            self._write_md(md_root, "1.root.json")
            self._write_md(md_targets, "1.targets.json")
            self._write_md(md_snapshot, "1.snapshot.json")
            self._write_md(md_timestamp, "timestamp.json")

    def _signers_or_create(self, role: str, count: int) -> list[Signer]:
        return [
            self.keys.signer(role, slot=n) if self.keys.path(role, n).exists() else self.keys.create(role, slot=n)
            for n in range(1, count + 1)
        ]

    def _root_md(self) -> Metadata[Root]:
        return self._read_md(f"{self.root_version()}.root.json")

    def _sign(self, md: Metadata[Any], role: str, root: Root) -> None:
        """Replace ``md``'s signatures with those of every local key ``root`` trusts for ``role``.

        Raises ConfigError, before anything is written, when fewer keys than the role's threshold are at hand.
        """
        trusted = set(root.roles[role].keyids)
        signers = [s for s in self.keys.signers(role) if s.public_key.keyid in trusted]
        threshold = root.roles[role].threshold
        if len(signers) < threshold:
            raise ConfigError(
                f"role {role!r} needs {threshold} signatures but only {len(signers)} of its trusted keys are in "
                f"{self.keys.directory} ({role}.pem, {role}-2.pem, ...); nothing was written"
            )
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)

    def trusted_root(self) -> bytes:
        """``1.root.json``: the one file a device must be given out of band (its trust anchor)."""
        return storage.read_bytes(self._fs, self._path("metadata", "1.root.json"))

    def _current(self) -> tuple[Metadata[Timestamp], Metadata[Snapshot], Metadata[Targets]]:
        timestamp = self._read_md("timestamp.json")
        snap_version = timestamp.signed.snapshot_meta.version
        snapshot = self._read_md(f"{snap_version}.snapshot.json")
        targets = self._read_md(f"{snapshot.signed.meta['targets.json'].version}.targets.json")
        return timestamp, snapshot, targets

    def targets(self) -> dict[str, TargetFile]:
        return dict(self._current()[2].signed.targets)

    def publish(self, name: str, data: bytes, *, custom: dict[str, Any] | None = None) -> PublishResult:
        """Make ``data`` the target ``name``; a no-op when it already is (same bytes and custom fields)."""
        target = TargetFile.from_data(name, data, ["sha256"])
        if custom:
            target.unrecognized_fields["custom"] = custom
        with self._lock():
            timestamp, snapshot, targets = self._current()
            old = targets.signed.targets.get(name)
            if old is not None and old.hashes == target.hashes and (old.custom or {}) == (custom or {}):
                return PublishResult(
                    name, target.hashes["sha256"], target.length, targets.signed.version,
                    snapshot.signed.version, timestamp.signed.version, changed=False,
                )  # fmt: skip
            directory, _, base = name.rpartition("/")
            blob = f"{directory}/{target.hashes['sha256']}.{base}" if directory else f"{target.hashes['sha256']}.{base}"
            storage.atomic_write_bytes(self._fs, self._path("targets", blob), data)
            targets.signed.targets[name] = target
            return self._commit(timestamp, snapshot, targets, name, target)

    def _commit(
        self,
        timestamp: Metadata[Timestamp],
        snapshot: Metadata[Snapshot],
        targets: Metadata[Targets],
        name: str,
        target: TargetFile,
    ) -> PublishResult:
        root = self._root_md().signed
        targets.signed.version += 1
        targets.signed.expires = self._expires("targets")
        self._sign(targets, "targets", root)
        snapshot.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
        snapshot.signed.version += 1
        snapshot.signed.expires = self._expires("snapshot")
        self._sign(snapshot, "snapshot", root)
        timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
        timestamp.signed.version += 1
        timestamp.signed.expires = self._expires("timestamp")
        self._sign(timestamp, "timestamp", root)
        # Everything is signed before anything is written; then new names first, timestamp.json last.
        self._write_md(targets, f"{targets.signed.version}.targets.json")
        self._write_md(snapshot, f"{snapshot.signed.version}.snapshot.json")
        self._write_md(timestamp, "timestamp.json")
        return PublishResult(
            name,
            target.hashes["sha256"],
            target.length,
            targets.signed.version,
            snapshot.signed.version,
            timestamp.signed.version,
            changed=True,
        )

    def refresh_timestamp(self) -> int:
        """Re-sign the timestamp with a new expiry (the scheduled job devices rely on). Returns its new version."""
        with self._lock():
            timestamp = self._read_md("timestamp.json")
            timestamp.signed.version += 1
            timestamp.signed.expires = self._expires("timestamp")
            self._sign(timestamp, "timestamp", self._root_md().signed)
            self._write_md(timestamp, "timestamp.json")
            return int(timestamp.signed.version)

    def rotate_key(self, role: str, *, slot: int = 1) -> int:
        """Replace the key in ``slot`` of ``role`` with a new one through a new root version. Returns that version.

        The new root is signed by every old root key and, for a root rotation, by the new one too, so it meets the
        thresholds of both the old and the new root. The replaced key file is kept as ``<role>[-N].pem.old``.
        """
        if role not in ROLES:
            raise ConfigError(f"role {role!r} is not one of {ROLES}")
        with self._lock():
            version = self.root_version()
            root: Metadata[Root] = self._read_md(f"{version}.root.json")
            old_root_signers = self.keys.signers("root")
            path = self.keys.path(role, slot)
            old_signer = self.keys.signer(role, slot=slot)
            if old_signer.public_key.keyid not in root.signed.roles[role].keyids:
                raise ConfigError(f"key file {path} is not a key root v{version} trusts for {role!r}")
            new_signer = CryptoSigner.generate_ed25519()
            root.signed.revoke_key(old_signer.public_key.keyid, role)
            root.signed.add_key(new_signer.public_key, role)
            root.signed.version += 1
            root.signed.expires = self._expires("root")
            root.signatures.clear()
            for signer in [*old_root_signers, *([new_signer] if role == "root" else [])]:
                root.sign(signer, append=True)
            pending = path.with_name(path.name + ".new")
            self.keys._write(pending, new_signer)
            self._write_md(root, f"{root.signed.version}.root.json")
            path.replace(path.with_name(path.name + ".old"))
            pending.replace(path)
            return int(root.signed.version)


def check_thresholds(thresholds: dict[str, int]) -> dict[str, int]:
    """Every role's signature threshold (1 unless given); ConfigError names an unknown role or a bad number."""
    for role, n in thresholds.items():
        if role not in ROLES:
            raise ConfigError(f"thresholds: {role!r} is not a TUF role; use {', '.join(ROLES)}")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
            raise ConfigError(f"thresholds: {role} must be a whole number of signatures from 1 to 10, got {n!r}")
    return {role: thresholds.get(role, 1) for role in ROLES}


def describe(repo: TufRepository) -> dict[str, Any]:
    """Current metadata versions, the timestamp's expiry and every target, for status output."""
    timestamp, snapshot, targets = repo._current()
    root = repo._root_md().signed
    return {
        "root": repo.root_version(),
        "roles": {r: {"threshold": root.roles[r].threshold, "keys": len(root.roles[r].keyids)} for r in ROLES},
        "timestamp": {"version": timestamp.signed.version, "expires": timestamp.signed.expires.isoformat()},
        "snapshot": snapshot.signed.version,
        "targets": {
            name: {"sha256": t.hashes["sha256"], "length": t.length, **(t.custom or {})}
            for name, t in targets.signed.targets.items()
        },
    }
