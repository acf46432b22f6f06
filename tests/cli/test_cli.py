"""The ``ferry`` command line, run in-process through typer's runner against a real registry and Prefect."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ferry.cli import app

pytestmark = pytest.mark.integration  # every test here uses a retrain flow run on a Prefect server

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def ferry(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> dict[str, str]:
    """Two versions of the breast-cancer model, trained through `ferry train` (the real flow)."""
    root = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("FERRY_REGISTRY_URL", str(root / "registry"))
    mp.setenv("FERRY_WORK_DIR", str(root / "runs"))
    mp.setenv("FERRY_ACTOR", "cli-tester")
    sys.path.insert(0, str(REPO / "examples" / "breast_cancer"))
    from make_csv import write_csv

    sys.path.pop(0)
    data = write_csv(root / "bc.csv")
    schema = REPO / "examples" / "breast_cancer" / "schema.yaml"
    code, out = ferry("train", "--data", str(data), "--schema", str(schema))
    assert code == 0, out
    assert "PROMOTED" in out
    assert "gate checks" in out
    code, out = ferry("train", "--data", str(data), "--schema", str(schema), "--estimator", "logistic_regression")
    assert code == 0, out
    yield {"root": str(root), "data": str(data), "schema": str(schema)}
    mp.undo()


def versions(root: str) -> list[str]:
    base = Path(root) / "registry" / "models" / "breast-cancer" / "versions"
    manifests = [json.loads((d / "manifest.json").read_text()) for d in base.iterdir()]
    return [m["id"] for m in sorted(manifests, key=lambda m: m["created_at"])]


def test_models_list_and_show(trained: dict[str, str]) -> None:
    first, second = versions(trained["root"])
    code, out = ferry("models", "list")
    assert code == 0
    assert first in out
    assert second in out
    assert "online/champion" in out
    code, out = ferry("models", "show", first[:8])
    assert code == 0
    for expected in (first, "roc_auc", "onnx.parity_max_abs_diff", "code revision", "scikit-learn"):
        assert expected in out
    code, out = ferry("models", "show", first, "--json")
    assert json.loads(out)["id"] == first


def test_promote_rollback_status_and_audit(trained: dict[str, str]) -> None:
    first, second = versions(trained["root"])
    code, out = ferry("status")
    assert code == 0
    assert "online/champion" in out
    code, out = ferry("promote", first, "--channel", "edge/beta", "--reason", "field trial")
    assert code == 0, out
    assert "edge/beta" in out
    assert first in out
    code, out = ferry("promote", second, "--channel", "edge/beta", "--reason", "newer")
    if code != 0:  # the second version's gate may have rejected it: a refusal must say so and --force must work
        assert "gate" in out.lower()
        code, out = ferry("promote", second, "--channel", "edge/beta", "--reason", "newer", "--force")
        assert code == 0, out
    code, out = ferry("rollback", "--channel", "edge/beta", "--reason", "field trial failed")
    assert code == 0, out
    code, out = ferry("status")
    assert "edge/beta" in out
    assert first in out
    code, out = ferry("audit", "verify")
    assert code == 0
    assert "hash chain intact" in out
    log = Path(trained["root"]) / "registry/models/breast-cancer/audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    last = records[-1]
    assert last["action"] == "rollback"
    assert last["actor"] == "cli-tester"
    assert last["reason"] == "field trial failed"


def test_audit_verify_names_the_tampered_record(trained: dict[str, str], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "registry"
    shutil.copytree(Path(trained["root"]) / "registry", copy)
    log = copy / "models" / "breast-cancer" / "audit.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) >= 2
    record = json.loads(lines[0])
    record["reason"] = "nothing to see here"
    lines[0] = json.dumps(record)
    log.write_text("\n".join(lines) + "\n")
    code, out = ferry("audit", "verify", "--registry", str(copy))
    assert code == 1
    assert "BROKEN" in out
    assert "line 1" in out


def test_clear_errors_exit_2(trained: dict[str, str]) -> None:
    code, out = ferry("models", "show", "ffffffffffff")
    assert code == 2
    assert "error:" in out
    code, out = ferry("promote", "ffff", "--channel", "Online Champion", "--reason", "x")
    assert code == 2
    assert "error:" in out
    code, out = ferry("rollback", "--channel", "edge/never-used")
    assert code == 2
    assert "roll back" in out
    code, out = ferry("train", "--data", trained["data"] + ".missing", "--schema", trained["schema"])
    assert code == 2
    assert ".missing" in out
