"""The agent's state on the device, and ``sync``: verify, unpack, self-test, switch — or leave the old model.

Everything lives under one home directory::

    config.json          repository URL, model, channel, self-test budget, crash limit
    trusted_root.json    the TUF root the device was provisioned with (its trust anchor)
    tuf/                 python-tuf's metadata cache (rollback protection survives restarts through it)
    downloads/           verified bundle files
    versions/<id>/       unpacked bundles (bundle.json + model.onnx)
    current, previous    symlinks into versions/, each switched atomically with a rename
    state.json           last sync, last error, crash counts, rejected bundles
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ferry_edge.bundle import target_name, unpack
from ferry_edge.errors import BundleRejected, ConfigError, NoModel, SyncError
from ferry_edge.model import EdgeModel

DEFAULTS: dict[str, Any] = {"budget_ms": 50.0, "max_crashes": 3, "max_bundle_bytes": 512 * 1024 * 1024}
#: Named points of an install. Setting FERRY_EDGE_PAUSE_AT to one makes the agent stop there (tests kill it there).
INSTALL_STEPS = ("downloaded", "unpacked", "self-tested", "switched")


def _pause_point(step: str) -> None:
    if os.environ.get("FERRY_EDGE_PAUSE_AT") == step:
        print(f"paused at {step}", file=sys.stderr, flush=True)
        time.sleep(3600)


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
        try:
            return dict(json.loads((self.home / "config.json").read_text()))
        except FileNotFoundError as exc:
            raise ConfigError(f"{self.home} is not an initialised agent home; run `ferry-edge init` first") from exc

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.home / "state.json").read_text()))
        except FileNotFoundError:
            return {"crashes": {}, "rejected": {}}

    def _save_state(self, **changes: Any) -> dict[str, Any]:
        state = {**self.state(), **changes}
        _write_json(self.home / "state.json", state)
        return state

    def _link(self, name: str) -> Path | None:
        link = self.home / name
        return link.resolve() if link.is_symlink() and link.resolve().exists() else None

    def active(self) -> EdgeModel:
        current = self._link("current")
        if current is None:
            raise NoModel(f"no model is installed in {self.home}; run `ferry-edge sync`")
        return EdgeModel(current)

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

    def sync(self) -> SyncResult:
        """Install the channel's bundle if it changed. Any failure leaves the active model as it was."""
        from tuf.api.exceptions import RepositoryError

        cfg = self.config
        name = target_name(cfg["model"], cfg["channel"])
        try:
            updater = self._updater()
            info = updater.get_targetinfo(name)
            if info is None:
                raise SyncError(f"the repository has no target {name!r}: nothing is published on {cfg['channel']}")
            sha = info.hashes["sha256"]
            if info.length > cfg["max_bundle_bytes"]:
                raise BundleRejected(f"bundle {sha[:12]} is {info.length} bytes, over max_bundle_bytes")
            state = self.state()
            if state.get("active_sha256") == sha and self._link("current") is not None:
                self._save_state(last_sync=_now(), last_error=None, stale=False)
                return SyncResult(False, state.get("active_version"), sha, "up to date")
            if sha in state.get("rejected", {}):
                raise BundleRejected(f"bundle {sha[:12]} was rejected before: {state['rejected'][sha]}")
            path = updater.find_cached_target(info) or updater.download_target(info)
            _pause_point("downloaded")
            return self._install(Path(path).read_bytes(), sha)
        except BundleRejected as exc:
            self._reject(exc)
            raise
        except RepositoryError as exc:
            self._save_state(last_sync_attempt=_now(), last_error=f"{type(exc).__name__}: {exc}", stale=True)
            raise SyncError(f"the repository did not verify ({type(exc).__name__}): {exc}") from exc
        except Exception as exc:  # network down, disk full: reported, old model stays
            if isinstance(exc, SyncError):
                self._save_state(last_sync_attempt=_now(), last_error=str(exc))
                raise
            self._save_state(last_sync_attempt=_now(), last_error=f"{type(exc).__name__}: {exc}")
            raise SyncError(f"sync failed: {type(exc).__name__}: {exc}") from exc

    def _reject(self, exc: BundleRejected) -> None:
        state = self.state()
        sha = getattr(exc, "sha256", None)
        rejected = dict(state.get("rejected", {}))
        if sha:
            rejected[sha] = str(exc)
        self._save_state(last_sync_attempt=_now(), last_error=f"rejected: {exc}", rejected=rejected)

    def _install(self, data: bytes, sha: str) -> SyncResult:
        staging = self.home / "versions" / f"incoming-{sha[:16]}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            manifest = unpack(data, staging)
            dest = self.home / "versions" / f"{manifest['version']}-{sha[:12]}"
            _pause_point("unpacked")
            report = self._selftest(staging)
            if not report.get("ok"):
                raise BundleRejected(f"self-test failed: {'; '.join(report.get('problems', ['no report']))}")
            if dest.exists():
                shutil.rmtree(staging)
            else:
                os.rename(staging, dest)
        except BundleRejected as exc:
            shutil.rmtree(staging, ignore_errors=True)
            exc.sha256 = sha  # type: ignore[attr-defined]
            raise
        _pause_point("self-tested")
        old = self._link("current")
        if old is not None and old != dest:
            _point(self.home / "previous", old)
        _point(self.home / "current", dest)
        _pause_point("switched")
        self._save_state(
            active_version=manifest["version"],
            active_sha256=sha,
            last_sync=_now(),
            last_error=None,
            stale=False,
            installed_at=_now(),
        )
        self._prune()
        return SyncResult(True, manifest["version"], sha, f"installed {manifest['version']}")

    def _selftest(self, directory: Path) -> dict[str, Any]:
        budget = str(self.config["budget_ms"])
        cmd = [sys.executable, "-m", "ferry_edge.selftest", str(directory), "--budget-ms", budget]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "problems": ["the self-test did not finish within 120 s"]}
        try:
            report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"ok": False, "problems": [f"the self-test process died (exit {out.returncode})"]}
        return report

    def _prune(self) -> None:
        keep = {p for p in (self._link("current"), self._link("previous")) if p is not None}
        for d in (self.home / "versions").iterdir():
            if d.resolve() not in keep and not d.name.startswith("."):
                shutil.rmtree(d, ignore_errors=True)

    # -- runtime health --------------------------------------------------------------------------------------

    def record_crash(self) -> bool:
        """Count a runtime crash of the active model; at ``max_crashes`` roll back to the previous one.

        The count persists in state.json across restarts. Returns True when a rollback happened.
        """
        state = self.state()
        version = str(state.get("active_version"))
        crashes = dict(state.get("crashes", {}))
        crashes[version] = int(crashes.get(version, 0)) + 1
        self._save_state(crashes=crashes)
        previous = self._link("previous")
        if crashes[version] < int(self.config["max_crashes"]) or previous is None:
            return False
        manifest = json.loads((previous / "bundle.json").read_text())
        rejected = dict(state.get("rejected", {}))
        if state.get("active_sha256"):
            rejected[state["active_sha256"]] = f"rolled back after {crashes[version]} runtime crashes"
        _point(self.home / "current", previous)
        (self.home / "previous").unlink(missing_ok=True)
        self._save_state(active_version=manifest["version"], active_sha256=None, rejected=rejected)
        return True

    def status(self) -> dict[str, Any]:
        state = self.state()
        current, previous = self._link("current"), self._link("previous")
        out: dict[str, Any] = {
            "home": str(self.home),
            "active_version": state.get("active_version") if current else None,
            "active_sha256": state.get("active_sha256") if current else None,
            "previous_version": json.loads((previous / "bundle.json").read_text())["version"] if previous else None,
            "last_sync": state.get("last_sync"),
            "last_error": state.get("last_error"),
            "stale": bool(state.get("stale")),
        }
        with contextlib.suppress(ConfigError):
            out.update({k: self.config[k] for k in ("repo_url", "model", "channel")})
        return out
