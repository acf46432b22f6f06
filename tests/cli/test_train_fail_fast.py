"""``ferry train`` checks its inputs before any Prefect server starts: one line, no traceback, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ferry.cli import app

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
from ferry.cli import main
try:
    main()
finally:
    print("prefect imported" if "prefect" in sys.modules else "prefect not imported", file=sys.stderr)
"""


def test_a_missing_schema_fails_before_prefect_is_imported(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("a,y\n1,0\n")
    args = ["train", "--data", str(data), "--schema", str(tmp_path / "nope.yaml")]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: ")
    assert "nope.yaml: schema file not found" in lines[0]
    assert "Traceback" not in done.stderr
    assert lines[-1] == "prefect not imported"


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ("P9,north,1.0,180,50,smudge", "column 'defect' breaks rule 'target_classes'"),
        ("P9,west,1.0,180,50,none", "column 'line' breaks rule 'levels'"),
    ],
    ids=["label-outside-classes", "unknown-level"],
)
def test_data_that_does_not_match_is_one_line(tmp_path: Path, row: str, named: str) -> None:
    data = tmp_path / "d.csv"
    data.write_text(f"part_id,line,speed,temperature,pressure,defect\nP1,north,1.0,180,50,none\n{row}\n")
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(data), "--schema", str(REPO / "examples/defects/schema.yaml")],
        env={"COLUMNS": "400"},
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert named in result.output
    assert result.output.count("\n") == 1
