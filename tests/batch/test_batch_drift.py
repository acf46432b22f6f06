"""Input drift of a batch run: per-partition random samples, Evidently against the champion's reference, the report
next to the output, and a clear summary when the version has no reference (the run still succeeds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batch_support import demo_partitions, second_version

from ferry import batch, demo_data
from ferry.batch import OutputDir, Reservoir, check_batch, discover_partitions
from ferry.registry import Registry


@pytest.fixture
def registry(writable_champion: dict[str, str]) -> Registry:
    return Registry(writable_champion["registry"])


def test_drifted_input_is_detected_and_fresh_input_is_not(tmp_path: Path, registry: Registry) -> None:
    fresh = batch.score(str(demo_partitions(tmp_path / "fresh", drift=0.0)), str(tmp_path / "out0"), registry)
    assert fresh.drift is not None
    assert fresh.drift["status"] == "no drift", fresh.drift["text"]
    assert fresh.drift["drifted_share"] < 0.25

    drifted = batch.score(str(demo_partitions(tmp_path / "drifted", drift=1.0)), str(tmp_path / "out1"), registry)
    d = drifted.drift
    assert d is not None
    assert d["status"] == "drifted", d["text"]
    assert d["drifted_share"] >= 0.25
    flagged = {c["feature"] for c in d["columns"] if c["drifted"]}
    assert {"device_os", "contract", "support_calls"} <= flagged
    assert [c["feature"] for c in d["columns"]] == list(demo_data.churn_schema().feature_names)
    assert all(c["method"] and c["threshold"] is not None for c in d["columns"])
    assert d["sample_rows"] == 2 * batch.BatchSettings().drift_sample_rows  # a sample of each 3,000-row partition
    assert d["reference_rows"] > 1000
    assert d["text"].startswith("drifted: ")
    report = tmp_path / "out1" / "drift" / "report.html"
    assert d["report"] == str(report)
    assert report.stat().st_size > 10_000
    assert (tmp_path / "out1" / "drift" / "report.evidently.json").exists()
    assert json.loads((tmp_path / "out1" / "drift" / "summary.json").read_text())["status"] == "drifted"
    # the scores themselves are all there
    assert drifted.scored == 6000


def test_samples_cover_each_partition_and_a_rerun_reuses_them(tmp_path: Path, registry: Registry) -> None:
    source = demo_partitions(tmp_path / "in", drift=0.0)
    settings = batch.BatchSettings(batch_rows=500, drift_sample_rows=300)
    first = batch.score(str(source), str(tmp_path / "out"), registry, settings=settings)
    samples = sorted((tmp_path / "out" / "_drift").iterdir())
    assert [p.name for p in samples] == ["part-0.parquet", "part-1.parquet"]
    frame = pq.read_table(samples[0]).to_pandas()
    assert len(frame) == 300
    assert list(frame.columns) == list(demo_data.churn_schema().feature_names)
    again = batch.score(str(source), str(tmp_path / "out"), registry, settings=settings)
    assert again.skipped == 2
    assert again.drift is not None
    assert first.drift is not None
    assert again.drift["sample_rows"] == first.drift["sample_rows"] == 600
    assert again.drift["columns"] == first.drift["columns"]  # same samples, same figures
    # the sample is drawn from the whole partition, not from its first record batches
    same = batch.score(str(source), str(tmp_path / "again"), registry, settings=settings)
    assert same.drift is not None
    assert pq.read_table(tmp_path / "again" / "_drift" / "part-0.parquet").equals(pq.read_table(samples[0]))


def test_a_version_without_reference_still_scores_and_says_so(
    tmp_path: Path, writable_champion: dict[str, str]
) -> None:
    import shutil

    shutil.copytree(writable_champion["registry"], tmp_path / "registry")
    registry = Registry(str(tmp_path / "registry"))
    second = second_version(registry, writable_champion["version"], tmp_path)
    assert "reference.parquet" not in registry.get(second).files
    summary = batch.score(
        str(demo_partitions(tmp_path / "in", drift=1.0)), str(tmp_path / "out"), registry, version=second
    )
    assert summary.scored == 6000
    assert summary.drift is not None
    assert summary.drift["status"] == "no reference"
    assert f"version churn/{second} has no reference sample" in summary.drift["text"]
    assert summary.drift["report"] is None
    assert not (tmp_path / "out" / "drift" / "report.html").exists()


def test_drift_can_be_switched_off(tmp_path: Path, registry: Registry) -> None:
    settings = batch.BatchSettings(drift=False)
    summary = batch.score(
        str(demo_partitions(tmp_path / "in", drift=1.0, parts=1)), str(tmp_path / "out"), registry, settings=settings
    )
    assert summary.drift is None
    assert list((tmp_path / "out" / "_drift").iterdir()) == []


def test_reservoir_samples_uniformly_and_reproducibly() -> None:
    schema = demo_data.churn_schema()
    frame = demo_data.make_churn(20_000, seed=9).drop(columns=["churned", "email", "phone"])
    frame["tenure_months"] = np.arange(len(frame), dtype=np.float64) % 600  # marks each row's position
    frame["num_lines"] = np.arange(len(frame)) // 600 + 1.0
    table = pa.Table.from_pandas(frame, preserve_index=False)

    def sample(k: int, seed: int) -> pd.DataFrame:
        reservoir = Reservoir(k, seed=seed)
        for b in table.to_batches(max_chunksize=1000):
            reservoir.add(check_batch(b, schema))
        got = reservoir.sample()
        assert got is not None
        return got

    s = sample(1000, seed=1)
    assert len(s) == 1000
    position = (s["num_lines"] - 1) * 600 + s["tenure_months"]
    assert position.is_unique
    assert position.min() < 1000
    assert position.max() > 19_000  # from the last record batches too
    assert 0.4 < (position < 10_000).mean() < 0.6  # about half from each half
    pd.testing.assert_frame_equal(s, sample(1000, seed=1))
    assert not s.equals(sample(1000, seed=2))
    assert len(sample(50_000, seed=1)) == 20_000  # fewer rows than k: all of them


@pytest.mark.parametrize("k", [7, 300, 5000])
def test_a_sample_drawn_from_the_input_is_the_one_scoring_keeps(tmp_path: Path, registry: Registry, k: int) -> None:
    """``sample_partition`` checks only the rows that could enter the sample, in other record batches, yet keeps
    the same rows as scoring does: with a third of the rows bad, few candidates at a time (k=7) need several rounds
    of checks, and k above the good rows keeps them all."""
    schema = demo_data.churn_schema()
    frame = demo_data.make_churn(4000, seed=31).drop(columns=["churned"])
    frame["customer_id"] = [f"C{j:05d}" for j in range(len(frame))]
    frame["tenure_months"] = frame["tenure_months"].astype(object)
    bad = np.random.default_rng(3).random(len(frame)) < 0.33
    frame.loc[bad & (np.arange(len(frame)) % 3 == 0), "tenure_months"] = "twelve"  # wrong type
    frame.loc[bad & (np.arange(len(frame)) % 3 == 1), "contract"] = "lifetime"  # unknown category
    frame.loc[bad & (np.arange(len(frame)) % 3 == 2), "monthly_charges"] = np.nan  # missing where required
    frame.to_csv(tmp_path / "part-0.csv", index=False)
    part = discover_partitions(str(tmp_path / "part-0.csv"))[0]
    model = batch.load_model(registry.url, "churn", registry.channel("churn", "online/champion") or "")
    scored = OutputDir(str(tmp_path / "scored"))
    scored.prepare()
    result = batch.score_partition(part, scored, model, batch_rows=256, sample_rows=k)
    assert result.rejected > 1000
    drawn = OutputDir(str(tmp_path / "drawn"))
    drawn.prepare()
    rows = batch.sample_partition(part, drawn, schema, k, batch_rows=1000)
    assert rows == min(k, result.scored)
    kept = pq.read_table(scored.drift_sample(part.key))
    assert pq.read_table(drawn.drift_sample(part.key)).equals(kept)
    assert kept.num_rows == rows
    assert kept.column("contract").to_pylist().count("lifetime") == 0


def test_finished_partitions_without_samples_get_them_from_their_input(tmp_path: Path, registry: Registry) -> None:
    """A run without the drift check keeps no samples; a rerun with it skips every partition (all scored) and
    draws their samples from the input, the same rows a run with the check would have kept."""
    source = str(demo_partitions(tmp_path / "in", drift=1.0))
    first = batch.score(source, str(tmp_path / "out"), registry, settings=batch.BatchSettings(drift=False))
    assert first.drift is None
    assert list((tmp_path / "out" / "_drift").iterdir()) == []
    again = batch.score(source, str(tmp_path / "out"), registry)
    assert again.skipped == 2
    assert again.drift is not None
    assert again.drift["status"] == "drifted"
    assert again.drift["sample_rows"] == 2 * batch.BatchSettings().drift_sample_rows
    whole = batch.score(source, str(tmp_path / "whole"), registry)
    for key in ("part-0", "part-1"):
        drawn = pq.read_table(tmp_path / "out" / "_drift" / f"{key}.parquet")
        assert drawn.equals(pq.read_table(tmp_path / "whole" / "_drift" / f"{key}.parquet"))
    assert whole.drift is not None
    assert again.drift["columns"] == whole.drift["columns"]


def test_a_failing_drift_check_is_reported_and_the_run_still_succeeds(tmp_path: Path, registry: Registry) -> None:
    settings = batch.BatchSettings(drift_timeout_s=0.001)  # Evidently cannot finish in a millisecond
    summary = batch.score(
        str(demo_partitions(tmp_path / "in", drift=0.0, parts=1)), str(tmp_path / "out"), registry, settings=settings
    )
    assert summary.scored == 3000
    assert summary.drift is not None
    assert summary.drift["status"] == "failed"
    assert "did not finish within 0.001 s" in summary.drift["text"]
    assert "the scores are unaffected" in summary.drift["text"]
    assert json.loads((tmp_path / "out" / "drift" / "summary.json").read_text())["status"] == "failed"
