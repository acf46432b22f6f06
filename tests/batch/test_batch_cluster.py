"""The ``batch-score`` flow on Dask clusters of processes: a ``dask scheduler`` and ``dask worker`` processes started
here and reached by address, and a ``LocalCluster`` of worker processes. Same scores as the one-process run; a
killed worker costs only its partitions' retries; a scheduler that goes away fails the run clearly, and a rerun
resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batch_support import write_partitions

from ferry import batch
from ferry.batch import ClusterLost
from ferry.cli.processes import free_port, stop_process
from ferry.registry import Registry

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]

DASK = str(Path(sys.executable).parent / "dask")


class Cluster:
    """``dask scheduler`` and ``dask worker --nworkers 2`` processes on 127.0.0.1, stopped by their PIDs."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen([DASK, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        return self._start(
            "scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        )

    def start_workers(self) -> subprocess.Popen[bytes]:
        return self._start(
            "workers",
            [
                "worker",
                self.address,
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--death-timeout",
                "20",
            ],
        )

    def wait_for_workers(self, n: int, timeout_s: float = 120) -> list[int]:
        """The PIDs of the worker processes once ``n`` of them have joined."""
        from distributed import Client

        with Client(self.address, timeout=timeout_s) as client:
            client.wait_for_workers(n, timeout=timeout_s)
            return list(client.run(os.getpid).values())

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, grace_s=15)
        self.procs.clear()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the module; the last test stops its scheduler and starts a new one."""
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.start_scheduler()
        c.start_workers()
        c.wait_for_workers(2)
        yield c
    finally:
        c.stop()


def scores_by_partition(out: Path) -> dict[str, pa.Table]:
    """Each partition's scores without the run's ``scored_at`` timestamp, in file order."""
    found = {}
    for path in sorted((out / "scores").rglob("*.parquet")):
        table = pq.read_table(path)
        found[str(path.relative_to(out / "scores"))] = table.drop_columns(["scored_at"])
    return found


def test_a_cluster_of_processes_scores_exactly_as_one_process(
    tmp_path: Path, writable_champion: dict[str, str], prefect_server: None, cluster: Cluster
) -> None:
    from distributed import LocalCluster

    from ferry_flows.batch_score import batch_score

    write_partitions(writable_champion, tmp_path / "in", n=4, csv=0)
    registry = Registry(writable_champion["registry"])
    batch.score(str(tmp_path / "in"), str(tmp_path / "plain"), registry)
    want = scores_by_partition(tmp_path / "plain")
    assert len(want) == 4
    common = {"input": str(tmp_path / "in"), "registry_url": writable_champion["registry"], "batch_rows": 500}

    by_address = batch_score(output=str(tmp_path / "address"), cluster_address=cluster.address, **common)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        in_processes = batch_score(output=str(tmp_path / "local"), cluster_address=local.scheduler_address, **common)
    for outcome, name in ((by_address, "address"), (in_processes, "local")):
        assert outcome["failures"] == {}
        got = scores_by_partition(tmp_path / name)
        assert list(got) == list(want)
        for key, table in want.items():
            assert got[key].equals(table), f"{name}: {key} differs from the one-process run"


def test_explanations_on_two_worker_processes_are_the_one_process_ones(
    tmp_path: Path, writable_champion: dict[str, str], prefect_server: None, cluster: Cluster
) -> None:
    from ferry_flows.batch_score import batch_score

    table = pq.read_table(writable_champion["data"])
    (tmp_path / "in").mkdir()
    for i in range(4):  # small partitions: every explained row costs thousands of model evaluations
        pq.write_table(table.slice(8 * i, 8), tmp_path / "in" / f"p{i}.parquet")
    registry = Registry(writable_champion["registry"])
    settings = batch.BatchSettings(batch_rows=5, drift=False)
    batch.score(str(tmp_path / "in"), str(tmp_path / "plain"), registry, settings=settings, explain=True, top_k=3)
    want = scores_by_partition(tmp_path / "plain")
    assert "attribution_tenure_months" in want["p0.parquet"].column_names

    outcome = batch_score(
        input=str(tmp_path / "in"),
        output=str(tmp_path / "dask"),
        registry_url=writable_champion["registry"],
        cluster_address=cluster.address,
        batch_rows=5,
        explain=True,
        top_k=3,
    )
    assert outcome["failures"] == {}
    assert outcome["explain"] == {"top_k": 3, "class": None}
    got = scores_by_partition(tmp_path / "dask")
    assert list(got) == list(want)
    for key, expected in want.items():
        assert got[key].equals(expected), f"{key} differs from the one-process run"


def test_a_killed_worker_costs_its_partitions_and_a_lost_scheduler_fails_then_resumes(
    tmp_path: Path, writable_champion: dict[str, str], prefect_server: None, cluster: Cluster
) -> None:
    from ferry_flows.batch_score import batch_score

    write_partitions(writable_champion, tmp_path / "in", n=6, csv=0)
    common = {"input": str(tmp_path / "in"), "registry_url": writable_champion["registry"], "batch_rows": 250}
    pids = cluster.wait_for_workers(2)
    out = tmp_path / "out"

    # kill one worker process once the first partition is committed: the nanny restarts it and only the partitions
    # it held run again
    import threading

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((out / "_manifest").glob("*.json")):
            time.sleep(0.02)
        os.kill(pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    outcome = batch_score(output=str(out), cluster_address=cluster.address, **common)
    killer.join(timeout=10)
    assert outcome["failures"] == {}
    assert outcome["rows"] == pq.read_table(writable_champion["data"]).num_rows
    assert len(list((out / "_manifest").glob("*.json"))) == 6
    assert pids[0] not in cluster.wait_for_workers(2)  # it did die mid-run, and its nanny started a new one

    # the scheduler goes away mid-run: the run fails naming the cluster, and a rerun on a new one resumes
    second = tmp_path / "second"
    scheduler = cluster.procs[0]

    def stop_scheduler() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((second / "_manifest").glob("*.json")):
            time.sleep(0.02)
        os.killpg(scheduler.pid, signal.SIGKILL)

    stopper = threading.Thread(target=stop_scheduler, daemon=True)
    stopper.start()
    with pytest.raises(ClusterLost, match=f"the Dask scheduler at {cluster.address} went away") as failed:
        batch_score(output=str(second), cluster_address=cluster.address, **common)
    stopper.join(timeout=10)
    assert "run the same command: finished partitions are skipped" in str(failed.value)
    cluster.stop()  # the workers outlive their scheduler and may commit a partition they held: count after they end
    done = len(list((second / "_manifest").glob("*.json")))
    assert 1 <= done < 6
    cluster.start_scheduler()
    cluster.start_workers()
    cluster.wait_for_workers(2)
    resumed = batch_score(output=str(second), cluster_address=cluster.address, **common)
    assert resumed["skipped"] == done
    assert resumed["failures"] == {}
    assert len(list((second / "_manifest").glob("*.json"))) == 6
