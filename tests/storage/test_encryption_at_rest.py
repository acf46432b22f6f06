"""Encryption at rest, end to end: with ``FERRY_ENCRYPTION_KEY_FILE`` set, a model trained through every retrain
step, online predictions, feedback (and its write-ahead file), a batch run, a monitor run and an erasure leave no id
and no value of any data row in clear in any byte under the registry or the run directories; everything still reads
back, and without the key nothing does."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from helpers import loop, serve_rows
from sealed_support import clear_files, leaks, needles, new_key_file

from ferry import batch, demo_data, monitor, status
from ferry.cli.parity import records
from ferry.errors import SealedObjectError
from ferry.governance import forget
from ferry.monitor import run as one_run
from ferry.online.logs import FeedbackLog
from ferry.registry import Registry, layout
from ferry.settings import TrainSettings

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # a batch run starts its drift check's process

#: Files that may stay in clear: they hold schemas, pointers, the audit trail, metrics and summaries, never rows.
CLEAR = re.compile(
    r"(.*/)?(manifest|schema|lineage|metrics|calibration|champion_metrics|parity|gate|data_quality|model_card|"
    r"channels|audit\.head|state|ingest|split|train|interval|importance)\.json|(.*/)?(audit|history)\.jsonl|.*/model_card\.md|"
    r".*/\.lock|.*/online/prediction-ids\.key|governance/erasure\.key|models/churn/batch/runs/[^/]+\.json"
)


def _frame(n: int, seed: int, *, drift: float = 0.0) -> pd.DataFrame:
    """Demo churn rows whose ids are random (a found id means a leak, not a coincidence)."""
    frame = demo_data.make_churn(n, seed=seed, drift=drift)
    frame["customer_id"] = [f"cust-{uuid.uuid4().hex[:16]}" for _ in range(n)]
    return frame


def test_with_a_key_no_row_is_stored_in_clear_and_everything_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRY_ENCRYPTION_KEY_FILE", str(new_key_file(tmp_path / "data.key")))
    monkeypatch.setenv("FERRY_ENCRYPTION_MODELS", "true")
    schema = tmp_path / "schema.yaml"
    schema.write_text(demo_data.churn_schema().dump_yaml())
    training = _frame(800, seed=3)
    (tmp_path / "data").mkdir()
    training.to_parquet(tmp_path / "data" / "train.parquet", index=False)
    registry = Registry(str(tmp_path / "registry"), actor="tester@ferry")
    runs = tmp_path / "runs"
    version, gate, _ = loop(
        tmp_path / "data" / "train.parquet",
        schema,
        registry,
        runs,
        train=TrainSettings(estimator="logistic_regression"),
    )
    assert gate["passed"], gate["reasons"]
    assert registry.verify_version(version) == []  # the manifest hashes what the files hold

    served = _frame(200, seed=4, drift=1.0)
    loaded_schema = registry.schema(version)
    ids = serve_rows(registry, records(served, loaded_schema), labels=True)
    wal = Path(layout.online_dir(registry.url, "churn", "wal")) / "feedback"
    durable = FeedbackLog(registry.url, "churn", wal_dir=wal)
    durable.record([(ids[0], "1")])
    durable.close()  # acknowledged, not yet in Parquet: the write-ahead file keeps it

    scored = _frame(300, seed=5, drift=1.0)
    (tmp_path / "in").mkdir()
    scored.to_parquet(tmp_path / "in" / "part.parquet", index=False)
    summary = batch.score(str(tmp_path / "in"), str(tmp_path / "out"), registry)
    assert summary.scored == 300

    settings = monitor.MonitorSettings(min_rows=100)
    mon = tmp_path / "monitor-work"
    gathered = one_run.gather(registry, "churn", loaded_schema, settings, mon)
    judged = [one_run.judge_source(registry, "churn", version.id, s, settings, "r1") for s in gathered.sources]
    assert {j["source"] for j in judged} == {"online", "batch"}
    assert all(j["drifted"] for j in judged)  # the encrypted rows were read back and judged
    one_run.record(registry, "churn", version.id, gathered, judged, settings, datetime.now(UTC))

    subject = served["customer_id"].iloc[7]
    erased = forget(registry, subject, work_dir=runs)
    assert erased.rows >= 1

    roots = [tmp_path / "registry", runs, mon]
    columns = ["total_charges", "monthly_charges", "data_usage_gb", "avg_call_minutes"]
    wanted = needles(pd.concat([training, served, scored]), "customer_id", columns, rb"cust-[0-9a-f]{16}")
    assert len(wanted) > 2500
    assert leaks(roots, wanted) == {}
    clear = clear_files(roots)
    assert [name for name in clear if not CLEAR.fullmatch(name)] == []
    assert any(name.endswith("/schema.json") for name in clear)  # schemas and metrics stay readable

    # everything reads back through the same readers as in clear
    assert len(monitor.online_logs_since(registry, "churn", "predictions", datetime(2000, 1, 1, tzinfo=UTC))) == 199
    (run,) = status.batch_runs(registry, "churn")
    assert run["scored"] == 300
    reference, _ = monitor.reference_of(registry, version)
    assert len(reference) == 640
    recovered = FeedbackLog(registry.url, "churn", wal_dir=wal)
    assert recovered.pending == 1  # the write-ahead file was decrypted on replay
    recovered.close()

    # without the key nothing reads, and the error names the object
    monkeypatch.delenv("FERRY_ENCRYPTION_KEY_FILE")
    with pytest.raises(SealedObjectError, match=r"reference\.parquet: the object is encrypted"):
        registry.read_bytes(version, "reference.parquet")
