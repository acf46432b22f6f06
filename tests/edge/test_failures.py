"""One state model for every failure: whatever made a sync fail, ``ferry-edge sync`` prints the same report, state.json
records the same shape, ``stale`` is set, and the old model keeps answering."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from edge_support import NAME, Setup, break_golden, edge, leftovers, retar, status, with_version
from ferry_edge.errors import FAILURE_KINDS

from ferry.publish.tufrepo import KeyStore, TufRepository

pytestmark = pytest.mark.slow

REPORT_KEYS = {"ok", "changed", "version", "sha256", "stale", "failure"}
FAILURE_KEYS = {"kind", "message", "at", "sha256", "retry_at"}


def _configure(setup: Setup, **changes: Any) -> None:
    path = setup.agent.home / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _publish_next(setup: Setup) -> bytes:
    newer = retar(setup.bundle.data, lambda m: m.update({"bundle.json": with_version(m["bundle.json"], "v-next")}))
    setup.repo.publish(NAME, newer)
    return newer


def unreachable(setup: Setup) -> None:
    _configure(setup, repo_url="http://127.0.0.1:9")  # nothing listens on the discard port


def expired(setup: Setup) -> None:
    keys = KeyStore(setup.root / "keys")
    TufRepository(str(setup.repo_dir), keys, expiry={"timestamp": timedelta(seconds=-1)}).refresh_timestamp()


def wrong_hash(setup: Setup) -> None:
    import hashlib

    newer = _publish_next(setup)
    [blob] = setup.repo_dir.glob(f"targets/**/{hashlib.sha256(newer).hexdigest()}.*")
    data = bytearray(blob.read_bytes())
    data[100] ^= 0x01
    blob.write_bytes(bytes(data))


def oversize(setup: Setup) -> None:
    _publish_next(setup)
    _configure(setup, max_bundle_bytes=1000)


def unpublished(setup: Setup) -> None:
    _configure(setup, channel="edge/nowhere")


def bad_golden(setup: Setup) -> None:
    setup.repo.publish(
        NAME, retar(setup.bundle.data, lambda m: m.update({"bundle.json": break_golden(m["bundle.json"])}))
    )


def rejected_before(setup: Setup) -> None:
    bad_golden(setup)
    assert edge(setup.agent.home, "sync").returncode == 2


def selftest_timeout(setup: Setup) -> None:
    _publish_next(setup)
    _configure(setup, selftest_timeout_s=0.001)  # no child process finishes in a millisecond


def disk_error(setup: Setup) -> None:
    _publish_next(setup)
    downloads = setup.agent.home / "downloads"
    for p in downloads.iterdir():
        p.unlink() if p.is_file() else shutil.rmtree(p)
    downloads.rmdir()
    downloads.write_bytes(b"")  # a file where the agent needs a directory: the bundle cannot be written


CASES: list[tuple[str, Callable[[Setup], None], str]] = [
    ("unreachable", unreachable, "unreachable"),
    ("expired-timestamp", expired, "unverified"),
    ("hash-mismatch", wrong_hash, "unverified"),
    ("oversize", oversize, "oversize"),
    ("unpublished", unpublished, "unpublished"),
    ("golden-mismatch", bad_golden, "rejected"),
    ("rejected-before", rejected_before, "rejected"),
    ("selftest-timeout", selftest_timeout, "selftest-incomplete"),
    ("disk-error", disk_error, "error"),
]


def test_every_failure_kind_has_a_case() -> None:
    assert {kind for _, _, kind in CASES} == set(FAILURE_KINDS)


@pytest.mark.parametrize(("cause", "kind"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_every_failure_has_the_same_shape(
    cause: Callable[[Setup], None],
    kind: str,
    tmp_path: Path,
    churn_champion: dict[str, str],
    serve_dir: Callable[[Path], str],
) -> None:
    setup = Setup(tmp_path, churn_champion, serve_dir)
    home = setup.agent.home
    first = edge(home, "sync")
    assert first.returncode == 0, first.stderr
    good = json.loads(first.stdout)
    assert set(good) == REPORT_KEYS
    assert (good["ok"], good["stale"], good["failure"]) == (True, False, None)

    cause(setup)
    failed = edge(home, "sync")
    assert failed.returncode == 2, failed.stdout + failed.stderr
    report = json.loads(failed.stdout)
    assert set(report) == REPORT_KEYS
    assert (report["ok"], report["changed"], report["stale"]) == (False, False, True)
    assert (report["version"], report["sha256"]) == (setup.version.id, setup.bundle.sha256)  # the old model
    failure = report["failure"]
    assert set(failure) == FAILURE_KEYS
    assert failure["kind"] == kind
    assert failure["message"] in failed.stderr

    now = status(home)
    assert now["failure"] == failure
    assert now["stale"] is True
    assert now["last_error"] == f"{kind}: {failure['message']}"
    assert now["active_version"] == setup.version.id
    assert setup.agent.active().predict(setup.rows(2))
    assert leftovers(home) == []
    state = json.loads((home / "state.json").read_text())
    assert (state["failure"], state["stale"]) == (failure, True)
