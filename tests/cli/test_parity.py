"""The same rows scored online (a real ``bentoml serve``), in batch (``ferry.batch.score``) and on an edge device (a
real agent synced over HTTP from a static host) give bit-for-bit the same outputs; and ``ferry serve`` / ``ferry demo``
run for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ferry import batch
from ferry.cli.app import app
from ferry.cli.parity import (
    Scores,
    batch_explanations,
    batch_scores,
    compare,
    edge_scores,
    explanation_key,
    online_explanations,
    online_scores,
    records,
)
from ferry.cli.processes import BentoNotFound, Service, StaticHost, bento_dir, free_port, workers_env
from ferry.demo_data import NEW_DEVICE_OS, churn_schema, make_churn
from ferry.errors import FerryError
from ferry.online.auth import hash_key
from ferry.publish import open_repository, publish_channel
from ferry.registry import Registry
from ferry.settings import EdgeSettings

KEY = "parity-test-key"
EXPLAINED = 12  # rows explained on every surface (the drifted, missing and boundary rows come first)
TOP_K = 4
FERRY = Path(sys.executable).parent / "ferry"


def _keys() -> str:
    return json.dumps([{"name": "tests", "sha256": hash_key(KEY), "scopes": ["predict", "explain", "admin"]}])


@pytest.fixture(scope="module")
def world(churn_champion: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A copy of the champion's registry, served online, scored in batch and installed on a device."""
    from ferry_edge.agent import Agent

    root = tmp_path_factory.mktemp("parity")
    shutil.copytree(churn_champion["registry"], root / "registry")
    registry = Registry(str(root / "registry"))
    version = churn_champion["version"]
    schema = churn_schema()
    # Drifted rows: unseen device OS, missing values in every nullable column, values at the schema's bounds.
    frame = make_churn(1500, seed=21, drift=1.0)
    frame.loc[0, ["tenure_months", "age", "num_lines"]] = [0.0, 18.0, 1.0]
    frame.loc[1, ["tenure_months", "age", "satisfaction_score"]] = [600.0, 120.0, 10.0]
    frame.loc[2, ["total_charges", "data_usage_gb", "avg_call_minutes", "satisfaction_score"]] = np.nan
    frame.loc[3, ["payment_method", "region", "device_os"]] = None
    frame.loc[4, "monthly_charges"] = 0.1 + 0.2  # a value whose shortest decimal form is long
    assert (frame["device_os"] == NEW_DEVICE_OS).any()
    rows = records(frame, schema)

    (root / "in").mkdir()
    frame.to_parquet(root / "in" / "rows.parquet", index=False)
    batch.score(str(root / "in"), str(root / "out"), registry)
    (root / "in-explain").mkdir()
    frame.head(EXPLAINED).to_parquet(root / "in-explain" / "rows.parquet", index=False)
    batch.score(str(root / "in-explain"), str(root / "out-explain"), registry, explain=True, top_k=TOP_K)

    registry.promote(version, "edge/stable", model="churn", reason="parity test")
    settings = EdgeSettings(repo_url=str(root / "repo"), keys_dir=str(root / "keys"))
    publish_channel(registry, open_repository(settings), "churn", "edge/stable")
    with StaticHost(root / "repo") as host:
        agent = Agent.init(
            root / "device",
            repo_url=host.url,
            model="churn",
            channel="edge/stable",
            trusted_root=(root / "repo" / "metadata" / "1.root.json").read_bytes(),
        )
        assert agent.sync().version == version

    env = {
        "FERRY_REGISTRY_URL": registry.url,
        "FERRY_ONLINE_API_KEYS": _keys(),
        "BENTOML_HOME": str(root / "bentoml-home"),
    }
    with Service(log=root / "serve.log", env=env) as service:
        yield {
            "version": version,
            "schema": schema,
            "rows": rows,
            "online": online_scores(service, KEY, rows, schema, chunk=400),
            "batch": batch_scores(root / "out", rows, schema),
            "edge": edge_scores(agent.active(), rows, schema),
            "explained": {
                "online": online_explanations(service, KEY, rows[:EXPLAINED], top_k=TOP_K),
                "batch": batch_explanations(root / "out-explain", rows[:EXPLAINED], schema),
                "edge": agent.active().explain(rows[:EXPLAINED], top_k=TOP_K),
            },
        }


@pytest.mark.integration
@pytest.mark.parametrize("other", ["batch", "edge"])
def test_online_batch_and_edge_outputs_are_bit_for_bit_identical(world: dict[str, Any], other: str) -> None:
    online, theirs = world["online"], world[other]
    assert len(online.ids) == len(world["rows"]) == 1500
    assert set(online.versions) == set(theirs.versions) == {world["version"]}
    parity = compare(online, theirs)
    assert parity.identical, parity
    assert parity.max_abs_diff == 0.0
    np.testing.assert_array_equal(online.probabilities.view(np.uint32), theirs.probabilities.view(np.uint32))
    # Not a degenerate model: both classes are predicted, and probabilities spread.
    assert set(online.predictions.tolist()) == {0, 1}
    assert online.probabilities[:, 1].std() > 0.1


@pytest.mark.integration
def test_online_batch_and_edge_explanations_are_identical(world: dict[str, Any]) -> None:
    explained = world["explained"]
    keys = {surface: [explanation_key(e) for e in answers] for surface, answers in explained.items()}
    assert len(keys["online"]) == EXPLAINED
    assert keys["online"] == keys["batch"] == keys["edge"]  # float64 equality: the same bits
    online = world["online"]
    for i, answer in enumerate(explained["online"]):
        # the class predicted is explained, with the probability every surface answered for it
        assert answer["class"] == online.predictions[i]
        assert answer["value"] == float(online.probabilities[i, online.predictions[i]])
        total = sum(answer["attributions"].values())
        assert abs(total - (answer["value"] - answer["base_value"])) <= 1e-6
        assert [t["feature"] for t in answer["top"]] == sorted(
            answer["attributions"], key=lambda f: -abs(answer["attributions"][f])
        )[:TOP_K]
        assert not answer["exact"]  # churn's 15 features: a sampled plan, its error measured
        assert answer["standard_errors"] == explained["edge"][i]["standard_errors"]
    assert len({k[3] for k in keys["online"]}) == EXPLAINED  # rows are explained differently


def _scores(probs: list[list[float]], *, version: str = "v1", surface: str = "a") -> Scores:
    p = np.asarray(probs, dtype=np.float32)
    return Scores(surface, (version,) * len(p), tuple(str(i) for i in range(len(p))), p.argmax(axis=1), p)


def test_compare_sees_a_one_ulp_difference() -> None:
    base = [[0.25, 0.75], [0.5, 0.5], [0.875, 0.125]]
    a = _scores(base)
    nudged = a.probabilities.copy()
    nudged[1, 0] = np.nextafter(nudged[1, 0], np.float32(1))
    b = Scores("b", a.versions, a.ids, a.predictions, nudged)
    parity = compare(a, b)
    assert not parity.identical
    assert parity.mismatched_rows == 1
    assert 0 < parity.max_abs_diff < 1e-7
    assert compare(a, _scores(base, surface="c")).identical


def test_compare_needs_the_same_version_and_the_same_rows() -> None:
    base = [[0.25, 0.75], [0.5, 0.5]]
    assert not compare(_scores(base), _scores(base, version="v2")).identical
    with pytest.raises(ValueError, match="different rows"):
        compare(_scores(base), _scores([*base, [0.1, 0.9]]))


def test_records_keep_every_bit_and_send_missing_values_as_null() -> None:
    frame = make_churn(50, seed=3)
    frame.loc[0, "monthly_charges"] = 0.1 + 0.2
    frame.loc[1, ["total_charges", "region"]] = [np.nan, None]
    rows = records(frame, churn_schema())
    back = json.loads(json.dumps(rows))
    assert back[0]["monthly_charges"] == 0.1 + 0.2
    assert back[1]["total_charges"] is None
    assert back[1]["region"] is None
    assert set(back[0]) == {"customer_id", *churn_schema().feature_names}
    assert back == rows


def test_bento_dir_follows_the_variable_and_names_it_when_wrong(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert (bento_dir() / "bentofile.yaml").is_file()
    monkeypatch.setenv("FERRY_BENTO_DIR", str(tmp_path))
    with pytest.raises(BentoNotFound, match="FERRY_BENTO_DIR"):
        bento_dir()


@pytest.mark.integration
def test_ferry_serve_answers_with_the_champion_and_stops_on_sigterm(
    churn_champion: dict[str, str], tmp_path: Path
) -> None:
    """With ``--workers 2``: two worker processes answer, and SIGTERM stops them all."""
    import psutil

    port = free_port()
    env = {
        **os.environ,
        "FERRY_ONLINE_API_KEYS": _keys(),
        "BENTOML_HOME": str(tmp_path / "bentoml-home"),
    }
    log = tmp_path / "serve.log"
    # a registry path relative to where ferry serve is started (bentoml serve runs elsewhere)
    relative = Path(churn_champion["registry"]).name
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(FERRY), "serve", "--port", str(port), "--workers", "2", "--registry", relative],
            cwd=Path(churn_champion["registry"]).parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(log=log, port=port)
    try:
        deadline = time.monotonic() + 120
        import httpx

        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.25)
        rows = records(make_churn(5, seed=4), churn_schema())
        answer = service.post("/predict", {"records": rows}, key=KEY)
        assert answer["version"] == churn_champion["version"]
        assert len(answer["predictions"]) == 5
        assert f"on http://127.0.0.1:{port} with 2 worker(s)" in log.read_text()
        workers = _workers(proc.pid)
        assert len(workers) == 2, [w.cmdline() for w in workers]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) is not None
            assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise


def _workers(pid: int) -> list[Any]:
    """The worker processes of the ``bentoml serve`` at ``pid`` (each runs BentoML's worker module)."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if any("worker" in part and "service" in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_workers_are_set_through_bentoml_overrides_and_checked() -> None:
    env = workers_env(3, {"BENTOML_CONFIG_OVERRIDES": json.dumps({"api_server": {"backlog": 512}})})
    assert json.loads(env["BENTOML_CONFIG_OVERRIDES"]) == {
        "api_server": {"backlog": 512},
        "services": {"ferry-online": {"workers": 3}},
    }
    for bad in (0, 65, True, 1.5):
        with pytest.raises(FerryError, match="workers must be a whole number from 1 to 64"):
            workers_env(bad, {})  # type: ignore[arg-type]
    with pytest.raises(FerryError, match="BENTOML_CONFIG_OVERRIDES is not JSON"):
        workers_env(2, {"BENTOML_CONFIG_OVERRIDES": "{workers: 2"})
    done = CliRunner().invoke(app, ["serve", "--workers", "0"])
    assert done.exit_code == 2
    assert "--workers" in done.output


def test_ferry_serve_names_a_missing_service_directory(churn_champion: dict[str, str], tmp_path: Path) -> None:
    env = {**os.environ, "FERRY_BENTO_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run(
        [str(FERRY), "serve", "--registry", churn_champion["registry"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "FERRY_BENTO_DIR" in done.stderr
    assert "nowhere" in done.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_demo_runs_the_whole_release_end_to_end(tmp_path: Path) -> None:
    """The README's first command, on its defaults: everything under ./.ferry of where it is run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    done = subprocess.run(
        [str(FERRY), "demo", "--rows", "6000", "--sample-rows", "300"],
        env={**env, "COLUMNS": "160"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    home = tmp_path / ".ferry"
    registry = Registry(str(home / "registry"))
    channels = registry.channels("churn")
    reasons = [r.reason for r in registry.audit("churn")]
    last = registry.audit("churn")[-1]  # the rollout's promotion: one release of online and edge together
    assert (last.action, sorted(last.channels)) == ("release", ["edge/stable", "online/champion"]), last
    assert "rollout promote: " in last.reason, last.reason
    champion = channels["online/champion"].version
    first = channels["online/champion"].history[-1]  # the first model was champion before
    # The loop: the drift-triggered candidate was staged, then promoted by the rollout, online and on edge/stable.
    assert channels["online/challenger"].version == champion
    assert channels["edge/beta"].version == champion
    assert channels["edge/stable"].version == champion
    assert any("drift: online: " in r for r in reasons)  # the staging of the drift-triggered candidate
    device = json.loads((home / "demo" / "device-1" / "state.json").read_text())
    assert device["active_version"] == champion
    manifests = (home / "demo" / "batch-output" / "after" / "_manifest").glob("*.json")
    assert {json.loads(p.read_text())["version"] for p in manifests} == {champion}
    out = done.stdout
    assert "ferry.drift.detected online: new drift (asks for a retrain)" in out
    assert out.index(first) < out.index("was " + first)  # served the first model, then switched without restart
    assert "bit-for-bit identical on 300 rows across online, batch, edge" in out
    assert f"online service: serves {champion}" in out
    assert "skew" not in out


def test_the_demo_clears_only_what_an_earlier_demo_made(tmp_path: Path) -> None:
    from ferry.cli.demo_steps import MARKER, fresh_world
    from ferry.errors import FerryError

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    fresh_world(ours)
    (ours / "old-run.txt").write_text("left by the last demo")
    (theirs).mkdir()
    (theirs / "precious.parquet").write_text("a user's data")
    with pytest.raises(FerryError, match="theirs holds data the demo did not make"):
        fresh_world(ours, theirs)
    assert (ours / "old-run.txt").exists()  # nothing is cleared unless everything may be
    assert (theirs / "precious.parquet").exists()
    fresh_world(ours, tmp_path / "new")
    assert sorted(p.name for p in ours.iterdir()) == [MARKER]
    assert (tmp_path / "new" / MARKER).exists()
