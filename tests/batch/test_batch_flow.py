"""The ``batch-score`` flow on each task runner, a real ``distributed.LocalCluster`` included: same output as the
plain function; a corrupt partition fails the run after the others have scored."""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from batch_support import read_scores, without_time, write_partitions

from ferry import batch, demo_data
from ferry.registry import Registry

# The Prefect client that tasks open inside in-process Dask workers leaves a socket to the test server for the
# garbage collector; the filter and the collection below keep that third-party leak out of other tests (pytest reports
# a socket the collector meets during another test as an unraisable exception: pyproject's filters name that form).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def _collect_leaked_sockets() -> Iterator[None]:
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield str(cluster.scheduler_address)


def test_runners_give_identical_output(
    tmp_path: Path, writable_champion: dict[str, str], prefect_server: None, dask_address: str
) -> None:
    from prefect.artifacts import Artifact

    from ferry_flows.batch_score import batch_score

    write_partitions(writable_champion, tmp_path / "in", n=3, csv=1)
    registry = Registry(writable_champion["registry"])
    plain = batch.score(str(tmp_path / "in"), str(tmp_path / "plain"), registry)
    want = without_time(read_scores(tmp_path / "plain"))

    common = {"input": str(tmp_path / "in"), "registry_url": writable_champion["registry"], "batch_rows": 1000}
    on_threads = batch_score(output=str(tmp_path / "thread"), runner="thread", **common)
    on_dask = batch_score(output=str(tmp_path / "dask"), cluster_address=dask_address, **common)
    for outcome, name in ((on_threads, "thread"), (on_dask, "dask")):
        assert (outcome["rows"], outcome["scored"], outcome["rejected"]) == (plain.rows, plain.scored, 0)
        assert outcome["version"] == writable_champion["version"]
        assert outcome["failures"] == {}
        pd.testing.assert_frame_equal(without_time(read_scores(tmp_path / name)), want)

    summary = Artifact.get("churn-batch-score")
    assert summary is not None
    assert summary.data is not None
    assert "| scored | 6,000 |" in str(summary.data)
    assert str(tmp_path / "dask") in str(summary.data)
    assert writable_champion["version"] in str(summary.data)
    assert "| input drift | no drift: 0 of 15 features drifted" in str(summary.data)
    assert "| explanations | without explanations |" in str(summary.data)
    drift = Artifact.get("churn-batch-drift")
    assert drift is not None
    rows = json.loads(str(drift.data))
    assert [r["feature"] for r in rows] == list(demo_data.churn_schema().feature_names)
    assert {r["drifted?"] for r in rows} == {"no"}
    report = Artifact.get("churn-batch-drift-report")
    assert report is not None
    assert (tmp_path / "dask" / "drift" / "report.html").as_uri() in str(report.data)


@pytest.mark.slow
def test_process_runner_scores_the_rest_when_one_partition_is_corrupt(
    tmp_path: Path, writable_champion: dict[str, str], prefect_server: None
) -> None:
    from ferry_flows.batch_score import batch_score

    write_partitions(writable_champion, tmp_path / "in", n=2, csv=0)
    (tmp_path / "in" / "day=05").mkdir()
    (tmp_path / "in" / "day=05" / "part.parquet").write_bytes(b"PAR1 garbage")
    common = {
        "input": str(tmp_path / "in"),
        "output": str(tmp_path / "out"),
        "registry_url": writable_champion["registry"],
    }
    state = batch_score(**common, return_state=True)
    assert state.is_failed()
    with pytest.raises(batch.PartitionsFailed, match=r"day=05__part: .*corrupt or truncated"):
        state.result()
    assert sorted(p.name for p in (tmp_path / "out" / "scores").iterdir()) == [
        "day=00__part.parquet",
        "day=01__part.parquet",
    ]
    assert len(read_scores(tmp_path / "out")) == 6000
    # the process pool wrote what the plain function writes for the same partitions
    registry = Registry(writable_champion["registry"])
    batch.score(str(tmp_path / "in" / "day=0[01]" / "*.parquet"), str(tmp_path / "plain"), registry)
    pd.testing.assert_frame_equal(
        without_time(read_scores(tmp_path / "out")), without_time(read_scores(tmp_path / "plain"))
    )
