"""A process killed (SIGKILL) in the middle of registering or promoting leaves the registry usable and consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
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


def run_and_kill(root: Path, mode: str, after_s: float) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after_s)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return len(out.splitlines())


@pytest.mark.parametrize("after_s", [1.7, 2.3, 3.1])
def test_kill_during_registration(tmp_path: Path, after_s: float) -> None:
    done = run_and_kill(tmp_path, "register", after_s)
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


@pytest.mark.parametrize("after_s", [2.5, 3.3, 4.1])
def test_kill_during_promotions(tmp_path: Path, after_s: float) -> None:
    run_and_kill(tmp_path, "promote", after_s)
    reg = Registry(str(tmp_path / "registry"))
    report = reg.verify_audit("crash")
    # either consistent, or cut between the log write and the pointer write, which the next move completes
    assert report.ok or report.repairable, report
    versions = reg.versions("crash")
    records = reg.audit("crash")
    # the log is the truth: after a cut between its two writes the pointer file lags one move behind
    current = records[-1].to_version if records else reg.channel("crash", "online/champion")
    target = next(v for v in versions if v.id != current)
    reg.promote(target.id, "online/champion", model="crash", reason="after crash")
    final = reg.verify_audit("crash")
    assert final.ok, final
    records = reg.audit("crash")
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert reg.channel("crash", "online/champion") == records[-1].to_version == target.id
