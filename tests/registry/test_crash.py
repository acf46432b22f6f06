"""A process killed (SIGKILL) in the middle of registering or promoting leaves the registry usable and consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ferry.registry import Registry

pytestmark = pytest.mark.slow

WRITER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from ferry.registry import Registry

    root, mode = Path(sys.argv[1]), sys.argv[2]
    reg = Registry(str(root / "registry"))
    blob = root / "model.onnx"
    gate = root / "gate.json"
    gate.write_text(json.dumps({"passed": True}))
    i = 0
    ids = []
    while True:
        if mode == "register" or len(ids) < 2:
            blob.write_bytes(os.urandom(8 << 20) + str(i).encode())  # 8 MiB: a write takes long enough to be hit
            v = reg.register("crash", {"model.onnx": blob, "gate.json": gate}, {"gate": {"passed": True}})
            ids.append(v.id)
            print("registered", v.id, flush=True)
        else:
            reg.promote(ids[i % 2], "online/champion", model="crash", reason=f"move {i}")
            print("promoted", i, flush=True)
        i += 1
    """
)


def run_and_kill(root: Path, mode: str, after: int) -> int:
    """Start the writer, wait for its ``after``-th report line, then SIGKILL it: the kill lands in the operation
    that line's successor is doing (a registration writing 8 MiB, or a promotion), not after a guessed delay."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = 0
    while seen < after:
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"the writer stopped after {seen} operations: {err[-2000:]}")
        seen += 1
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return seen + len(out.splitlines())


@pytest.mark.parametrize("after", [1, 2, 3])
def test_kill_during_registration(tmp_path: Path, after: int) -> None:
    done = run_and_kill(tmp_path, "register", after)
    reg = Registry(str(tmp_path / "registry"))
    versions = reg.versions("crash")
    assert len(versions) >= done  # everything reported as registered is there
    for v in versions:
        assert reg.verify_version(v) == [], f"{v.id} is damaged after the kill"
    # the registry still takes new versions and promotions
    blob = tmp_path / "after.onnx"
    blob.write_bytes(b"after the crash")
    (tmp_path / "g.json").write_text(json.dumps({"passed": True}))
    v = reg.register("crash", {"model.onnx": blob, "gate.json": tmp_path / "g.json"}, {"gate": {"passed": True}})
    reg.promote(v.id, "online/champion", model="crash", reason="after crash")
    assert reg.verify_audit("crash").ok


@pytest.mark.parametrize("after", [3, 6, 11])
def test_kill_during_promotions(tmp_path: Path, after: int) -> None:
    done = run_and_kill(tmp_path, "promote", after)
    reg = Registry(str(tmp_path / "registry"))
    report = reg.verify_audit("crash")
    # either consistent, or cut between the log write and the pointer write, which the next move completes
    assert report.ok or report.repairable, report
    versions = reg.versions("crash")
    records = reg.audit("crash")
    assert len(records) >= done - 2  # every move reported as done (the first two lines are registrations)
    # the log is the truth: after a cut between its two writes the pointer file lags one move behind
    current = records[-1].to_version if records else reg.channel("crash", "online/champion")
    target = next(v for v in versions if v.id != current)
    reg.promote(target.id, "online/champion", model="crash", reason="after crash")
    final = reg.verify_audit("crash")
    assert final.ok, final
    records = reg.audit("crash")
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert reg.channel("crash", "online/champion") == records[-1].to_version == target.id
