"""Fixtures of the online service's tests: ``bentos/online/service.py`` imported once, its ASGI app, and clients
that start a service instance over a registry (``Online.to_asgi()`` under Starlette's TestClient)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from online_support import key_entries

SERVICE = Path(__file__).resolve().parents[2] / "bentos" / "online" / "service.py"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """bentos/online/service.py, imported once (BENTOML_HOME in a temporary directory)."""
    os.environ.setdefault("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml-home")))
    if "ferry_online_service" in sys.modules:
        return sys.modules["ferry_online_service"]
    spec = importlib.util.spec_from_file_location("ferry_online_service", SERVICE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ferry_online_service"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app(service: ModuleType) -> Any:
    """The ASGI app, built once: BentoML registers its Prometheus metrics when the app is built.

    Each TestClient runs the app's lifespan, which creates a new service instance from the environment of its test.
    """
    return service.Online.to_asgi()


@pytest.fixture
def client_for(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start the service over a registry directory; every client is closed (lifespan ends) after its test."""
    from starlette.testclient import TestClient

    opened: list[Any] = []

    def start(registry: str, **env: str) -> Any:
        monkeypatch.setenv("FERRY_REGISTRY_URL", registry)
        monkeypatch.setenv("FERRY_ONLINE_API_KEYS", json.dumps(key_entries()))
        monkeypatch.setenv("FERRY_ONLINE_POLL_INTERVAL_S", "0.1")
        for name, value in env.items():
            monkeypatch.setenv(f"FERRY_ONLINE_{name.upper()}", value)
        while opened:  # one service instance per app at a time: close the previous client first
            opened.pop().__exit__(None, None, None)
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        return client

    yield start
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_for: Any, churn_champion: dict[str, str]) -> Any:
    return client_for(churn_champion["registry"])
