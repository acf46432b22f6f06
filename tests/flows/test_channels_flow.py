"""The ``promote`` and ``rollback`` flows move several channels as one release (one audit record), publish its edge
bundle, and roll the release back as one record; under the session's Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import artifacts_of, clone_version, copy_clean

from ferry.publish import describe, open_repository

pytestmark = pytest.mark.integration


def test_the_promote_flow_releases_online_and_edge_together_and_rollback_undoes_it(
    prefect_server: None, churn_champion: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry_flows.channels import promote, rollback

    monkeypatch.setenv("FERRY_EDGE_REPO_URL", str(tmp_path / "repo"))
    monkeypatch.setenv("FERRY_EDGE_KEYS_DIR", str(tmp_path / "keys"))
    registry = copy_clean(churn_champion["registry"], tmp_path / "registry")
    old = churn_champion["version"]
    new = clone_version(registry, registry.get(old), tmp_path / "clone", note="released from the UI")
    registry.promote(old, "edge/stable", model="churn", reason="test: devices on the champion")
    n = len(registry.audit("churn"))

    state = promote(
        new, "spring release", channels=["online/champion", "edge/stable"], registry_url=registry.url,
        return_state=True,
    )  # fmt: skip
    out = state.result()
    assert (out["action"], out["to"]) == ("release", new)
    assert [m["channel"] for m in out["moves"]] == ["online/champion", "edge/stable"]
    assert [r.action for r in registry.audit("churn")[n:]] == ["release"]
    assert describe(open_repository())["targets"]["churn/edge-stable/bundle.tar"]["version"] == new
    assert "edge/stable" in str(artifacts_of(state.state_details.flow_run_id)["churn-release"].data)

    back = rollback("churn", "bad spring", last_release=True, registry_url=registry.url)
    assert (back["action"], back["release"]) == ("release-rollback", out["release"])
    assert {registry.channel("churn", c) for c in ("online/champion", "edge/stable")} == {old}
    assert describe(open_repository())["targets"]["churn/edge-stable/bundle.tar"]["version"] == old
    assert registry.verify_audit("churn").ok
