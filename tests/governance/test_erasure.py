"""Erasure: ``ferry forget --id`` removes one data subject's rows from the prediction log and the feedback of those
predictions, quarantine, reference samples (of a version registered when they still held ids) and the run
directories; afterwards no file under the registry or the work directory holds the id, other subjects' rows are
all there, versions still verify, and only a keyed hash of the id is reported."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import copy_registry
from typer.testing import CliRunner

from ferry import demo_data, storage
from ferry.cli import app
from ferry.cli.parity import records
from ferry.governance import forget
from ferry.online.holder import ModelHolder
from ferry.online.logs import FeedbackLog, PredictionLog
from ferry.online.predict import predict
from ferry.registry import Registry, layout

SUBJECT = "subject-4711"


def holding(root: Path, value: str) -> list[str]:
    """Files under ``root`` that hold ``value``: in their raw bytes, or in any cell of a Parquet file."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if value.encode() in data:
            found.append(str(path.relative_to(root)))
        elif path.suffix == ".parquet":
            table = pq.read_table(io.BytesIO(data))
            if any(value == str(cell) for column in table.columns for cell in column.to_pylist()):
                found.append(str(path.relative_to(root)))
    return found


def parquet_rows(directory: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in directory.rglob("*.parquet"))


@pytest.fixture
def kept(churn_champion: dict[str, str], tmp_path: Path) -> tuple[Registry, Path, str]:
    """A registry with the subject in every place ferry keeps rows, and a work directory of retrain runs."""
    registry = copy_registry(churn_champion, tmp_path / "registry")
    work = tmp_path / "runs"
    shutil.copytree(Path(churn_champion["registry"]).parent / "runs", work)
    frame = demo_data.make_churn(40, seed=5)
    frame.loc[3, "customer_id"] = SUBJECT
    frame.loc[7, "customer_id"] = SUBJECT  # the subject made two requests
    holder = ModelHolder(registry, "churn", "online/champion")
    holder.refresh()
    loaded = holder.current
    assert loaded is not None
    rows = records(frame, loaded.schema)
    answer = predict(loaded, rows)
    log = PredictionLog(registry.url, "churn", sample_rate=1.0)
    log.record(loaded, rows, answer)
    log.flush()
    feedback = FeedbackLog(registry.url, "churn")
    feedback.record([(p.prediction_id, str(p.prediction)) for p in answer.predictions])
    feedback.flush()
    fs, root = storage.open_fs(registry.url)
    line = json.dumps({"reason": "test", "row": {**rows[3], "prediction_id": answer.predictions[3].prediction_id}})
    storage.atomic_write_bytes(
        fs, f"{layout.online_dir(root, 'churn', 'quarantine')}/predictions/x.jsonl", line.encode()
    )
    # a version registered when reference samples still held ids
    base = registry.get(churn_champion["version"])
    old = tmp_path / "old"
    old.mkdir()
    files = {}
    for name in base.files:
        (old / name).write_bytes(registry.read_bytes(base, name))
        files[name] = old / name
    training = pq.read_table(churn_champion["data"]).to_pandas()
    training.loc[0, "customer_id"] = SUBJECT
    training.head(500).to_parquet(old / "reference.parquet")
    (old / "lineage.json").write_text(json.dumps({**json.loads((old / "lineage.json").read_text()), "note": "old"}))
    registry.register("churn", files, dict(base.info))
    return registry, work, answer.predictions[3].prediction_id


def test_forget_removes_the_subject_everywhere_and_nothing_else(kept: tuple[Registry, Path, str]) -> None:
    registry, work, prediction_id = kept
    root = Path(registry.url)
    training_subject = str(pq.read_table(next(work.rglob("data.parquet"))).column("customer_id")[0])
    assert holding(root, SUBJECT)  # the test can fail: the subject is there before
    assert holding(work, training_subject)
    predictions = root / "models" / "churn" / "online" / "predictions"
    before = parquet_rows(predictions)
    channels = registry.channels("churn")

    dry = forget(registry, SUBJECT, work_dir=work, dry_run=True)
    assert dry.counts["predictions"] == 2
    assert holding(root, SUBJECT)  # a dry run changes nothing

    erased = forget(registry, SUBJECT, work_dir=work)
    assert erased.counts == dry.counts
    assert erased.counts["predictions"] == 2
    assert erased.counts["feedback"] == 2
    assert erased.counts["quarantine"] == 1
    assert erased.counts["reference samples"] == 1
    assert holding(root, SUBJECT) == []
    assert holding(root, prediction_id) == []  # the feedback of the subject's predictions went too
    assert parquet_rows(predictions) == before - 2  # and nothing else
    assert len(erased.subject) == 64
    assert SUBJECT not in json.dumps(erased.to_dict())
    for v in registry.versions("churn"):
        assert registry.verify_version(v) == [], v.id

    # the audit log records the erasure with its counts, under the keyed hash, and still verifies
    [record] = [r for r in registry.audit("churn") if r.action == "erase"]
    assert erased.subject in record.reason
    assert "predictions 2" in record.reason
    assert SUBJECT not in Path(registry.url, "models", "churn", "audit.jsonl").read_text()
    assert registry.verify_audit("churn").ok
    assert registry.channels("churn") == channels

    # the run directories, by the training data's own ids
    runs = forget(registry, training_subject, work_dir=work)
    assert runs.counts.get("run directories", 0) >= 1
    assert holding(work, training_subject) == []


def test_an_unknown_id_is_a_clear_error_and_changes_nothing(kept: tuple[Registry, Path, str]) -> None:
    registry, work, _ = kept
    root = Path(registry.url)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    result = CliRunner().invoke(
        app, ["forget", "--id", "NOBODY-42", "--registry", registry.url], env={"FERRY_WORK_DIR": str(work)}
    )
    assert result.exit_code == 2
    assert "no rows of id 'NOBODY-42'" in result.output
    assert "nothing changed" in result.output
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "governance" not in p.parts}
    assert after == {p: b for p, b in before.items() if "governance" not in p.parts}

    done = CliRunner().invoke(
        app,
        ["forget", "--id", SUBJECT, "--registry", registry.url],
        env={"FERRY_WORK_DIR": str(work), "COLUMNS": "200"},
    )
    assert done.exit_code == 0, done.output
    assert "predictions" in done.output
    assert SUBJECT not in done.output
