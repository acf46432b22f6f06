"""Shared fixtures. Environment defaults are set before Prefect or BentoML is imported by any test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("FERRY_CODE_REVISION", "test")


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
