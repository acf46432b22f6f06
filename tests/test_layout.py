"""The deployment file points at real flows, and the core package starts nothing on import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_prefect_yaml_entrypoints_load_as_flows() -> None:
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert spec["deployments"], "prefect.yaml defines no deployments"
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
        params = set(flow.parameters.properties)
        given = set(deployment.get("parameters", {}))
        assert given <= params, deployment["name"]
        required = set(flow.parameters.required or [])
        for trigger in deployment.get("triggers", []):  # a run nobody fills a form for: the trigger fills the rest
            assert set(trigger.get("parameters", {})) <= params, deployment["name"]
            assert required <= given | set(trigger.get("parameters", {})), deployment["name"]
        if deployment.get("schedules"):
            assert required <= given, deployment["name"]
        if "schema_file" in deployment.get("parameters", {}):
            assert (REPO / deployment["parameters"]["schema_file"]).exists()


def test_importing_ferry_starts_nothing_and_imports_no_framework() -> None:
    code = (
        "import sys, ferry, ferry.registry, ferry.train, ferry.cli;"
        "bad = [m for m in ('prefect', 'bentoml', 'evidently') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""
