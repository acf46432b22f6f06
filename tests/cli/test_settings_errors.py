"""A wrong FERRY_* setting ends any command with one line naming the variable, its value and the reason (exit 2),
never a traceback: the console script as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MAIN = "from ferry.cli import main; main()"


@pytest.mark.parametrize(
    ("args", "variable", "value", "reason"),
    [
        (["status"], "FERRY_LOCK_TIMEOUT_S", "abc", "valid number"),
        (["models", "list"], "FERRY_REGISTRY_URL", "", "at least 1 character"),
        (["audit", "verify"], "FERRY_LOCK_TIMEOUT_S", "-1", "greater than 0"),
        (["housekeeping", "--dry-run"], "FERRY_RETENTION_PREDICTIONS", "-3", "greater than 0"),
        (["score", "--input", "in", "--output", "out"], "FERRY_BATCH_BATCH_ROWS", "0", "greater than or equal to 1"),
    ],
    ids=["status", "models", "audit", "housekeeping", "score"],
)
def test_a_wrong_setting_is_one_line_naming_it(
    tmp_path: Path, args: list[str], variable: str, value: str, reason: str
) -> None:
    env = {**os.environ, "FERRY_REGISTRY_URL": str(tmp_path / "registry"), variable: value, "COLUMNS": "400"}
    done = subprocess.run([sys.executable, "-c", MAIN, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    [line] = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("error: invalid setting")
    assert f"{variable}={value!r}" in line
    assert reason in line
