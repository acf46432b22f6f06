"""Shared fixtures. Environment defaults are set before Prefect or BentoML is imported by any test module."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import clone_version, copy_clean, copy_registry

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("FERRY_CODE_REVISION", "test")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a busy machine starts it slower
# every retrain of the suite measures its version's importance table: on fewer holdout rows than the default 200
# (tests/train/test_explaining.py checks the table against this setting), so that it adds about a second per retrain
os.environ.setdefault("FERRY_IMPORTANCE_ROWS", "40")
os.environ.setdefault("FERRY_IMPORTANCE_REPEATS", "2")


SERVER_FIXTURES = frozenset({"prefect_server", "serve_dir", "s3_server", "s3_env"})
"""Fixtures that start Prefect or a server: a test that uses one is an integration test."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts Prefect or a server (through these fixtures) as integration, whether or not its
    module says so, so that ``-m "not integration"`` is the fast set."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One ephemeral Prefect server (SQLite) for every flow-level test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def ferry_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the registry and run directories of this test into tmp_path."""
    monkeypatch.setenv("FERRY_REGISTRY_URL", str(tmp_path / "registry"))
    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FERRY_ACTOR", "tester@ferry")
    return tmp_path


@pytest.fixture(scope="session")
def churn_champion(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A registry whose ``online/champion`` is a model trained on 6000 demo churn rows (plain functions, no Prefect).

    Returns paths and ids as strings: ``registry``, ``version``, ``schema``, ``data`` (the training Parquet file).
    Treat it as read-only; copy the registry directory if a test needs to change it.
    """
    from helpers import loop

    from ferry import demo_data
    from ferry.registry import Registry

    root = tmp_path_factory.mktemp("champion")
    schema = root / "schema.yaml"
    schema.write_text(demo_data.churn_schema().dump_yaml())
    data = demo_data.write_demo(root / "data", n_rows=6000, seed=11, fmt="parquet")
    registry = Registry(str(root / "registry"))
    version, gate, _ = loop(data, schema, registry, root / "runs")
    assert gate["passed"], gate["reasons"]
    return {"registry": str(root / "registry"), "version": version.id, "schema": str(schema), "data": str(data)}


@pytest.fixture(scope="module")
def writable_champion(churn_champion: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``churn_champion`` with its registry copied for one test module, for tests that write to the registry (a
    batch run records itself and its input sample there): the session's registry stays read-only."""
    copy = tmp_path_factory.mktemp("champion-copy") / "registry"
    copy_clean(churn_champion["registry"], copy)
    return {**churn_champion, "registry": str(copy)}


@pytest.fixture
def serve_dir() -> Iterator[Callable[[Path], str]]:
    """Start Python's http.server on a directory (127.0.0.1, free port); returns its URL. Stopped by PID."""
    from ferry.cli.processes import StaticHost

    hosts: list[StaticHost] = []

    def start(directory: Path) -> str:
        hosts.append(StaticHost(directory).start())
        return hosts[-1].url

    yield start
    for host in hosts:
        host.stop()


@pytest.fixture(scope="module")
def pair(churn_champion: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str, str]:
    """A registry whose ``online/challenger`` points at a second version of the champion's model.

    Returns ``(registry, champion_id, challenger_id)``; used by the online routing tests.
    """
    tmp = tmp_path_factory.mktemp("routing")
    registry = copy_registry(churn_champion, tmp / "registry")
    base = registry.get(churn_champion["version"])
    challenger = clone_version(registry, base, tmp / "challenger", note="challenger")
    registry.promote(challenger, "online/challenger", model="churn", reason="test: challenger")
    return registry, base.id, challenger


@pytest.fixture
def staged(pair: tuple[Any, str, str], tmp_path: Path) -> tuple[Any, str, str]:
    """The champion/challenger registry, with the challenger also on edge/beta and the champion on edge/stable."""
    registry, champion, challenger = pair
    copy = copy_clean(registry.url, tmp_path / "registry")
    copy.promote(champion, "edge/stable", model="churn", reason="test")
    copy.promote(challenger, "edge/beta", model="churn", reason="test")
    return copy, champion, challenger


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """moto's S3 server (a process, stopped by its PID) behind a fault proxy; yields the ``FaultProxy``, whose
    ``moto`` attribute is the server."""
    from s3_support import FaultProxy, MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    proxy = FaultProxy(server.url).start()
    proxy.moto = server  # type: ignore[attr-defined]
    try:
        yield proxy
    finally:
        proxy.stop()
        server.stop()


@pytest.fixture
def s3_env(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket on the test S3 server, reached through the fault proxy by the usual AWS variables (this
    process and every process it starts); yields ``s3://<bucket>``. Faults left by the test are cleared."""
    import uuid

    from s3_support import CREDENTIALS, make_bucket

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"ferry-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_server.url, bucket)
    try:
        yield f"s3://{bucket}"
    finally:
        s3_server.clear()


@pytest.fixture(scope="session")
def task_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One multiclass (``defects``) and one regression (``demand``) model of the examples, each through every retrain
    step (plain functions) into one registry, promoted to ``online/champion``. Read-only.

    Returns ``root``, ``registry`` and, per example name, its ``data`` (CSV), ``version``, ``gate`` and ``moved``.
    """
    from helpers import example_maker, loop

    from ferry.registry import Registry
    from ferry.settings import TrainSettings

    repo = Path(__file__).resolve().parents[1]
    root = tmp_path_factory.mktemp("tasks")
    registry = Registry(str(root / "reg"))
    out: dict[str, Any] = {"root": root, "registry": registry}
    # logistic regression: fast, and monotone in speed for P(scratch) as the data were made
    for name, estimator in (("defects", "logistic_regression"), ("demand", "ridge")):
        data = example_maker(name).write_csv(root / f"{name}.csv", 700)
        schema = repo / "examples" / name / "schema.yaml"
        version, gate, moved = loop(data, schema, registry, root / "runs", train=TrainSettings(estimator=estimator))
        out[name] = {"data": data, "version": version, "gate": gate, "moved": moved}
    return out
