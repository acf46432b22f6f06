"""The agent's state on the device, and ``sync``: verify, unpack, self-test, switch — or leave the old model.

Everything lives under one home directory::

    config.json          repository URL, model, channel and the settings (``ferry_edge.settings``)
    trusted_root.json    the TUF root the device was provisioned with (its trust anchor)
    tuf/                 python-tuf's metadata cache (rollback protection survives restarts through it)
    downloads/           verified bundle files
    versions/<id>-<sha>/ unpacked bundles: bundle.json + model.onnx, and install.json (the bundle's sha256)
    current, previous    symlinks into versions/, each switched atomically with a rename
    state.json           last sync, the last failure, crash counts, rejected and postponed bundles; it also
                         mirrors active_version and active_sha256 for its readers (never read back as truth)
    .lock                held by a sync (and by retry and record_crash) so that two never interleave

**One source of truth for what runs.** ``current`` decides which model ``predict`` loads, so ``status`` (and with it
every heartbeat) reads the version from ``current/bundle.json`` and the sha256 from ``current/install.json``, never
from state.json. A kill at any point of an install leaves the two agreeing.

**One shape for every failure.** A sync that fails, whatever the kind (:data:`ferry_edge.errors.FAILURE_KINDS`),
records ``failure = {kind, message, at, sha256, retry_at}``, sets ``last_error`` to ``"<kind>: <message>"`` and
``stale`` to true; a sync that succeeds clears all three. ``stale`` therefore means: the device could not confirm
that it runs what its channel publishes.

**Rejected and postponed bundles.** A bundle that fails its checks (layout, hashes, a self-test that ran and failed)
is rejected: later syncs refuse it without downloading it. A self-test that did not complete (a signal, a timeout,
the latency budget missed) postpones the bundle instead: it is tried again after ``selftest_backoff_s``, doubling,
and rejected only after ``selftest_attempts`` attempts. ``Agent.retry`` (``ferry-edge retry``) clears rejections and
postponements; so does a newer version of the repository's targets metadata.

**Leftovers.** A sync first collects what a killed install left behind: ``versions/incoming-*``, partial
directories, half-made links, temporary files and versions that neither ``current`` nor ``previous`` points at.
``collect_leftovers`` does the same at the start of any command, unless a sync holds the lock at that moment.

One concept kept whole (about 590 lines): the agent's state and the steps of one sync (verify, unpack, self-test,
switch, report) share the same files and failure shape, and read best in order.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from ferry_edge.bundle import target_name, unpack
from ferry_edge.errors import (
    BundleRejected,
    ConfigError,
    EdgeError,
    NoModel,
    NothingToRetry,
    SelfTestIncomplete,
    SyncError,
)
from ferry_edge.model import EdgeModel
from ferry_edge.points import INSTALL_STEPS, pause_point
from ferry_edge.selftest import run as run_selftest
from ferry_edge.settings import DEFAULTS, SETTINGS, Setting, check_setting

__all__ = ["DEFAULTS", "INSTALL_STEPS", "SETTINGS", "Agent", "Installed", "Setting", "SyncResult"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _point(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target`` atomically (a new link renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.new")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)


@dataclass(frozen=True)
class SyncResult:
    changed: bool
    version: str | None
    sha256: str | None
    detail: str


@dataclass(frozen=True)
class Installed:
    """A model a link points at, read from the files ``predict`` loads."""

    directory: Path
    version: str
    sha256: str | None
    installed_at: str | None


class Agent:
    def __init__(self, home: str | Path) -> None:
        self.home = Path(home)

    # -- configuration and state ----------------------------------------------------------------------------

    @classmethod
    def init(cls, home: str | Path, *, repo_url: str, model: str, channel: str, trusted_root: bytes) -> Agent:
        agent = cls(home)
        try:
            root = json.loads(trusted_root)
            if root["signed"]["_type"] != "root":
                raise ValueError("not root metadata")
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"the trusted root given is not TUF root metadata: {exc}") from exc
        for sub in ("tuf", "downloads", "versions"):
            (agent.home / sub).mkdir(parents=True, exist_ok=True)
        if not (agent.home / "trusted_root.json").exists():
            (agent.home / "trusted_root.json").write_bytes(trusted_root)
        config = {**DEFAULTS, "repo_url": repo_url.rstrip("/"), "model": model, "channel": channel}
        _write_json(agent.home / "config.json", config)
        return agent

    @property
    def config(self) -> dict[str, Any]:
        """config.json with every setting checked (a default where one is absent), or ConfigError naming the field."""
        path = self.home / "config.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{self.home} is not an initialised agent home; run `ferry-edge init` first") from exc
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); run `ferry-edge init` again") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} is not a JSON object; run `ferry-edge init` again")
        for key in ("repo_url", "model", "channel"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ConfigError(f"config.json field {key!r} is missing or not a string; run `ferry-edge init` again")
        config = dict(raw)
        for name, setting in SETTINGS.items():
            config[name] = check_setting(name, raw.get(name, setting.default), setting)
        return config

    def state(self) -> dict[str, Any]:
        path = self.home / "state.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return {"crashes": {}, "rejected": {}, "pending": {}}
        except ValueError as exc:
            state = exc
        if not isinstance(state, dict):
            raise ConfigError(
                f"{path} is not a JSON object ({state}); move it aside and the agent starts a new one "
                "(its rejected bundles are then tried again)"
            )
        return state

    def _save_state(self, **changes: Any) -> dict[str, Any]:
        state = {**self.state(), **changes}
        _write_json(self.home / "state.json", state)
        return state

    @contextlib.contextmanager
    def _locked(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the home's lock (True), or, with ``wait=False``, yield False at once when another process holds it."""
        fd = os.open(self.home / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing releases the lock; so does the death of the process

    def _link(self, name: str) -> Path | None:
        link = self.home / name
        return link.resolve() if link.is_symlink() and link.resolve().exists() else None

    def installed(self, name: str = "current") -> Installed | None:
        """The model ``current`` (or ``previous``) points at, read from the same directory ``predict`` loads."""
        directory = self._link(name)
        if directory is None:
            return None
        try:
            version = str(json.loads((directory / "bundle.json").read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        sha: str | None = None
        installed_at: str | None = None
        try:
            record = json.loads((directory / "install.json").read_text())
            sha, installed_at = record.get("sha256"), record.get("installed_at")
        except (OSError, ValueError, AttributeError):  # installed by an older agent: its sha256 is in state.json
            legacy = self.state().get("active_sha256")
            if name == "current" and isinstance(legacy, str) and directory.name.endswith(legacy[:12]):
                sha = legacy
        return Installed(directory, version, sha, installed_at)

    def active(self) -> EdgeModel:
        current = self._link("current")
        if current is None:
            raise NoModel(f"no model is installed in {self.home}; run `ferry-edge sync`")
        return EdgeModel(current)

    # -- leftovers -------------------------------------------------------------------------------------------

    def collect_leftovers(self) -> list[str]:
        """Remove what a killed install left behind, unless a sync is running now. Returns the names removed."""
        if not (self.home / "versions").is_dir():
            return []
        with self._locked(wait=False) as held:
            return self._collect() if held else []

    def _collect(self) -> list[str]:
        removed = []
        for d in (self.home / "versions").iterdir():
            if d.name.startswith("incoming-") or (d.name.startswith(".") and d.name.endswith(".partial")):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"versions/{d.name}")
        temporary = [*self.home.glob(".state.json.*"), *(self.home / "tuf").glob("tmp*")]  # python-tuf's temp files
        for p in [self.home / ".current.new", self.home / ".previous.new", *temporary]:
            if p.is_symlink() or p.exists():
                p.unlink()
                removed.append(p.name)
        self._mirror()
        return removed + self._prune()

    def _mirror(self) -> None:
        """Copy what ``current`` holds into state.json's ``active_version`` and ``active_sha256``, for readers of the
        file; the agent itself never takes them from there."""
        active = self.installed("current")
        version, sha = (active.version, active.sha256) if active else (None, None)
        state = self.state()
        if (state.get("active_version"), state.get("active_sha256")) != (version, sha):
            self._save_state(active_version=version, active_sha256=sha)

    def _prune(self) -> list[str]:
        keep = {p for p in (self._link("current"), self._link("previous")) if p is not None}
        removed = []
        for d in (self.home / "versions").iterdir():
            if d.resolve() not in keep and not d.name.startswith("."):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"versions/{d.name}")
        return removed

    # -- sync ----------------------------------------------------------------------------------------------------

    def _updater(self) -> Any:
        from tuf.ngclient import Updater, UpdaterConfig

        cfg = self.config
        return Updater(
            metadata_dir=str(self.home / "tuf"),
            metadata_base_url=f"{cfg['repo_url']}/metadata/",
            target_base_url=f"{cfg['repo_url']}/targets/",
            target_dir=str(self.home / "downloads"),
            config=UpdaterConfig(max_root_rotations=32),
            bootstrap=(self.home / "trusted_root.json").read_bytes(),
        )

    def _targets_version(self) -> int | None:
        """The version of the targets metadata the updater trusts now (it wrote the file after verifying it)."""
        try:
            return int(json.loads((self.home / "tuf" / "targets.json").read_text())["signed"]["version"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def sync(self) -> SyncResult:
        """Install the channel's bundle if it changed. Any failure leaves the active model as it was and is recorded
        in state.json in one shape (see the module docstring); the error raised carries its ``kind``."""
        cfg = self.config
        with self._locked():
            seen: dict[str, str] = {}
            try:
                self._collect()
                result = self._sync(cfg, seen)
            except Exception as exc:
                error = _as_edge_error(exc)
                self._record_failure(error, seen.get("sha256"))
                if error is exc:
                    raise
                raise error from exc
            now = _now()
            self._save_state(last_sync=now, last_sync_attempt=now, failure=None, last_error=None, stale=False)
            return result

    def _sync(self, cfg: dict[str, Any], seen: dict[str, str]) -> SyncResult:
        name = target_name(cfg["model"], cfg["channel"])
        updater = self._updater()
        info = updater.get_targetinfo(name)
        targets_version = self._targets_version()
        self._forget_before(targets_version)
        if info is None:
            raise SyncError(
                f"the repository has no target {name!r}: nothing is published on {cfg['channel']}", kind="unpublished"
            )
        sha = str(info.hashes["sha256"])
        seen["sha256"] = sha
        label = _custom_version(info)
        if info.length > cfg["max_bundle_bytes"]:
            raise BundleRejected(
                f"bundle {sha[:12]} is {info.length} bytes, over max_bundle_bytes ({cfg['max_bundle_bytes']}); "
                "raise the setting in config.json to accept it",
                kind="oversize",
            )
        active = self.installed("current")
        if active is not None and active.sha256 == sha:
            return SyncResult(False, active.version, sha, "up to date")
        state = self.state()
        rejected = _entries(state, "rejected")
        if sha in rejected:
            raise BundleRejected(
                f"bundle {sha[:12]} was rejected before: {rejected[sha].get('reason')}; "
                "`ferry-edge retry` or a newer targets version clears this"
            )
        pending = _entries(state, "pending").get(sha)
        if pending and _parse(pending.get("retry_at")) > datetime.now(UTC):
            raise SelfTestIncomplete(
                f"bundle {sha[:12]}: its self-test did not complete ({pending.get('reason')}); attempt "
                f"{int(pending.get('attempts', 0)) + 1} of {cfg['selftest_attempts']} waits until {pending['retry_at']}"
            )
        path = updater.find_cached_target(info) or updater.download_target(info)
        pause_point("downloaded")
        return self._install(Path(path).read_bytes(), sha, label=label, targets_version=targets_version)

    def _record_failure(self, error: EdgeError, sha: str | None) -> None:
        state = self.state()
        retry_at = None
        if error.kind == "selftest-incomplete" and sha:
            retry_at = _entries(state, "pending").get(sha, {}).get("retry_at")
        now = _now()
        failure = {"kind": error.kind, "message": str(error), "at": now, "sha256": sha, "retry_at": retry_at}
        self._save_state(last_sync_attempt=now, failure=failure, last_error=f"{error.kind}: {error}", stale=True)

    def _forget_before(self, targets_version: int | None) -> None:
        """Drop rejections and postponements recorded under older targets metadata (a publisher's way to say: try
        again); entries written by an older agent, which lack the version, are dated to this one."""
        if targets_version is None:
            return
        state = self.state()
        changed = False
        kept: dict[str, dict[str, dict[str, Any]]] = {}
        for key in ("rejected", "pending"):
            kept[key] = {}
            for sha, entry in _entries(state, key).items():
                if entry.get("targets_version") is None:
                    entry = {**entry, "targets_version": targets_version}
                    changed = True
                if int(entry["targets_version"]) < targets_version:
                    changed = True
                    continue
                kept[key][sha] = entry
        if changed:
            self._save_state(**kept)

    def _install(self, data: bytes, sha: str, *, label: str | None, targets_version: int | None) -> SyncResult:
        staging = self.home / "versions" / f"incoming-{sha[:16]}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            manifest = unpack(data, staging)
            label = manifest["version"]
            pause_point("unpacked")
            self._selftest(staging)
            record = {"sha256": sha, "version": manifest["version"], "installed_at": _now()}
            _write_json(staging / "install.json", record)
        except BundleRejected as exc:
            shutil.rmtree(staging, ignore_errors=True)
            self._set_aside(sha, "failed", str(exc), label, targets_version)
            raise
        except SelfTestIncomplete as exc:
            shutil.rmtree(staging, ignore_errors=True)
            self._postpone(sha, exc, label, targets_version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        dest = self.home / "versions" / f"{manifest['version']}-{sha[:12]}"
        if dest.exists():  # installed before (the previous model, or a killed install): keep it, make it whole
            if not (dest / "install.json").exists():
                _write_json(dest / "install.json", record)
            shutil.rmtree(staging)
        else:
            os.rename(staging, dest)
        pause_point("self-tested")
        old = self._link("current")
        if old is not None and old != dest.resolve():
            _point(self.home / "previous", old)
            pause_point("previous-linked")
        _point(self.home / "current", dest)
        pause_point("switched")
        state = self.state()
        pending = {k: v for k, v in _entries(state, "pending").items() if k != sha}
        self._save_state(pending=pending, active_version=manifest["version"], active_sha256=sha)
        pause_point("recorded")
        self._prune()
        return SyncResult(True, manifest["version"], sha, f"installed {manifest['version']}")

    def _set_aside(self, sha: str, kind: str, reason: str, version: str | None, targets_version: int | None) -> None:
        state = self.state()
        rejected = _entries(state, "rejected")
        rejected[sha] = {
            "kind": kind,
            "reason": reason,
            "version": version,
            "at": _now(),
            "targets_version": targets_version,
        }
        pending = {k: v for k, v in _entries(state, "pending").items() if k != sha}
        self._save_state(rejected=rejected, pending=pending)

    def _postpone(
        self, sha: str, exc: SelfTestIncomplete, version: str | None, targets_version: int | None
    ) -> NoReturn:
        """Count an incomplete self-test: postpone the bundle with backoff, or reject it after the last attempt."""
        cfg = self.config
        pending = _entries(self.state(), "pending")
        attempts = int(pending.get(sha, {}).get("attempts", 0)) + 1
        limit = int(cfg["selftest_attempts"])
        if attempts >= limit:
            reason = f"its self-test did not complete in {attempts} attempts (last: {exc})"
            self._set_aside(sha, "incomplete", reason, version, targets_version)
            raise BundleRejected(
                f"bundle {sha[:12]}: {reason}; `ferry-edge retry` or a newer targets version clears this"
            ) from exc
        wait = float(cfg["selftest_backoff_s"]) * 2 ** (attempts - 1)
        retry_at = (datetime.now(UTC) + timedelta(seconds=wait)).isoformat(timespec="milliseconds")
        pending[sha] = {
            "attempts": attempts,
            "reason": str(exc),
            "retry_at": retry_at,
            "version": version,
            "targets_version": targets_version,
        }
        self._save_state(pending=pending)
        raise SelfTestIncomplete(f"{exc}; attempt {attempts} of {limit}, the next one not before {retry_at}") from exc

    def _selftest(self, directory: Path) -> None:
        cfg = self.config
        run_selftest(directory, budget_ms=float(cfg["budget_ms"]), timeout_s=float(cfg["selftest_timeout_s"]))

    # -- clearing rejections -----------------------------------------------------------------------------------

    def retry(self, bundle: str | None = None) -> list[dict[str, Any]]:
        """Clear rejected and postponed bundles, so that the next sync tries them again.

        ``bundle`` picks one by its version or a prefix of its sha256; without it, all are cleared. Returns what was
        cleared (``sha256``, ``version``, ``was``: rejected or postponed, ``reason``); NothingToRetry when ``bundle``
        matches nothing.
        """
        with self._locked():
            state = self.state()
            cleared: list[dict[str, Any]] = []
            kept: dict[str, dict[str, dict[str, Any]]] = {}
            for key, was in (("rejected", "rejected"), ("pending", "postponed")):
                kept[key] = {}
                for sha, entry in _entries(state, key).items():
                    if bundle is None or sha.startswith(bundle.lower()) or entry.get("version") == bundle:
                        cleared.append({"sha256": sha, "was": was, **{k: entry.get(k) for k in ("version", "reason")}})
                    else:
                        kept[key][sha] = entry
            if bundle is not None and not cleared:
                raise NothingToRetry(
                    f"no rejected or postponed bundle has version or sha256 {bundle!r}; `ferry-edge status` lists them"
                )
            if cleared:
                self._save_state(**kept)
            return cleared

    # -- runtime health --------------------------------------------------------------------------------------

    def record_crash(self) -> bool:
        """Count a runtime crash of the active model; at ``max_crashes`` roll back to the previous one.

        The count persists in state.json across restarts. Returns True when a rollback happened.
        """
        with self._locked():
            active = self.installed("current")
            if active is None:
                raise NoModel(f"no model is installed in {self.home}; there is nothing to roll back")
            state = self.state()
            crashes = dict(state.get("crashes", {}))
            crashes[active.version] = int(crashes.get(active.version, 0)) + 1
            self._save_state(crashes=crashes)
            previous = self._link("previous")
            if crashes[active.version] < int(self.config["max_crashes"]) or previous is None:
                return False
            if active.sha256:
                reason = f"rolled back after {crashes[active.version]} runtime crashes"
                self._set_aside(active.sha256, "crashed", reason, active.version, self._targets_version())
            _point(self.home / "current", previous)
            (self.home / "previous").unlink(missing_ok=True)
            self._mirror()
            return True

    def metadata_expires(self) -> datetime | None:
        """When the timestamp metadata this device last verified expires: past it, the device is stale until a sync
        verifies a newer one (a repository frozen at an older, unexpired timestamp cannot be detected earlier)."""
        return _expires(self.home / "tuf" / "timestamp.json")

    def status(self) -> dict[str, Any]:
        """What runs (read from the model ``predict`` loads), the last sync and failure, rejected and postponed
        bundles."""
        state = self.state()
        current, previous = self.installed("current"), self.installed("previous")
        failure = state.get("failure")
        stale = failure is not None if "failure" in state else bool(state.get("stale"))
        expires = self.metadata_expires()
        if expires is not None and expires <= datetime.now(UTC):
            stale = True  # the repository may be frozen: nothing newer could be verified since this expired
        out: dict[str, Any] = {
            "home": str(self.home),
            "active_version": current.version if current else None,
            "active_sha256": current.sha256 if current else None,
            "installed_at": current.installed_at if current else None,
            "previous_version": previous.version if previous else None,
            "last_sync": state.get("last_sync"),
            "last_sync_attempt": state.get("last_sync_attempt"),
            "last_error": state.get("last_error"),
            "stale": stale,
            "metadata_expires": expires.isoformat() if expires is not None else None,
            "failure": failure,
            "rejected": _entries(state, "rejected"),
            "pending": _entries(state, "pending"),
        }
        with contextlib.suppress(ConfigError):
            out.update({k: self.config[k] for k in ("repo_url", "model", "channel")})
        return out


def _expires(path: Path) -> datetime | None:
    """The expiry of the timestamp metadata python-tuf stored after verifying it (None before the first sync)."""
    try:
        signed = json.loads(path.read_bytes())["signed"]
        return datetime.fromisoformat(str(signed["expires"]).replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _entries(state: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """``rejected`` or ``pending`` of state.json; an older agent's rejections were bare reason strings."""
    raw = state.get(key) or {}
    return {
        str(sha): dict(entry) if isinstance(entry, dict) else {"kind": "failed", "reason": str(entry)}
        for sha, entry in raw.items()
    }


def _parse(stamp: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(stamp))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _custom_version(info: Any) -> str | None:
    custom = getattr(info, "custom", None)
    version = custom.get("version") if isinstance(custom, dict) else None
    return str(version) if version is not None else None


def _as_edge_error(exc: Exception) -> EdgeError:
    """A sync's failure as the agent's own error, with its kind."""
    from tuf.api.exceptions import DownloadError, DownloadLengthMismatchError, RepositoryError

    if isinstance(exc, EdgeError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, RepositoryError | DownloadLengthMismatchError):
        return SyncError(f"the repository did not verify ({name}): {exc}", kind="unverified")
    if isinstance(exc, DownloadError):
        cause = _root_cause(exc)
        why = f" ({type(cause).__name__}: {cause})" if cause is not exc else ""
        return SyncError(f"the repository could not be reached ({name}): {exc}{why}", kind="unreachable")
    return SyncError(f"sync failed: {name}: {exc}", kind="error")


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception behind ``exc`` (a TLS certificate error behind a download error, say)."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc
