"""schemathesis against the OpenAPI that a real ``bentoml serve`` publishes: no input gets a server error (5xx).

Every operation of ``/docs.json`` is called with generated bodies, valid and invalid, with a key that holds every
scope, so requests reach the handlers instead of stopping at the key check.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from helpers import copy_registry
from hypothesis import HealthCheck, settings
from online_support import Server, start_server, stop_server
from schemathesis.checks import not_a_server_error

from ferry.online.auth import hash_key

pytestmark = pytest.mark.integration

ALL = "schemathesis-key"
HEADERS = {"Authorization": f"Bearer {ALL}"}


@pytest.fixture(scope="module")
def served(churn_champion: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    registry = copy_registry(churn_champion, tmp / "registry")
    scopes = ["predict", "explain", "feedback", "telemetry", "admin"]
    keys = [{"name": "fuzz", "sha256": hash_key(ALL), "scopes": scopes}]
    running = start_server(registry, tmp, api_keys=json.dumps(keys))
    try:
        yield running
    finally:
        stop_server(running)


GENERATION = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


# schemathesis 4 draws from the ``random`` module inside its strategies, which hypothesis flags once per process:
# the warning is about schemathesis' code, not about the service under test
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_no_input_gets_a_server_error(served: Server) -> None:
    """Positive and negative cases for every operation (schemathesis' pytest plugin does not load under pytest 9,
    so each operation's strategy is run by hypothesis here)."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable

    api = schemathesis.openapi.from_url(served.url + "/docs.json", headers=HEADERS)
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/explain", "/feedback", "/telemetry", "/model", "/refresh"}
    calls: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        for mode in GENERATION:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
            def run(case: Any) -> None:
                response = case.call(headers=HEADERS, timeout=30)
                calls[(case.path, response.status_code)] += 1
                case.validate_response(response, checks=[not_a_server_error])

            try:
                run()
            except Unsatisfiable:
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.path  # nothing to break: no inputs
    assert not [call for call in calls if call[1] >= 500], calls
    assert calls[("/predict", 200)] + calls[("/telemetry", 200)] + calls[("/model", 200)] > 0, calls
