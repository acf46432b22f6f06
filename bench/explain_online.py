"""Single-record ``POST /explain`` latency against ``POST /predict`` on the same ``bentoml serve``, churn model.

    uv run python bench/explain_online.py [--registry DIR] [--requests 200] [--rounds 3]

One ferry service (one worker, onnxruntime at one intra-op thread, on 127.0.0.1) serves ``online/champion``. Each
plan is a version with the champion's files and an ``explain.npz`` made with other settings
(``FERRY_EXPLAIN_BACKGROUND_ROWS``, ``FERRY_EXPLAIN_BUDGET``); the first is the champion as registered (the
defaults, unless the environment sets others). For each plan, the channel is moved to its version and, once the
service answers with it, ``--rounds`` interleaved rounds each send ``--requests`` one-record ``/predict`` requests,
then as many ``/explain`` requests, one at a time over a kept connection. Prints, per plan, the model evaluations per
explained row, the p50 and p99 of both (milliseconds, medians over rounds) and explain/predict as ratios; the goal
is explain p50 <= 10 x predict p50.

Without ``--registry`` a churn model is trained on 6,000 demo rows into a temporary directory first (as
``bench/online.py`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from online import one_record, server_env, train_registry, wait_ready  # this folder is on a script's path

from ferry.cli.processes import free_port, stop_process

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-explain-key"
PLANS = ((20, 8192), (10, 4096), (5, 2048), (2, 512))
"""(background rows, budget) per plan: the defaults first, then plans with fewer evaluations per row."""


def plan_versions(registry_url: str, work: Path) -> list[tuple[str, str, int]]:
    """(version id, label, model evaluations per row) per plan: the champion, then clones with other plans."""
    import io

    import pandas as pd

    from ferry.explain import ExplainFile, ExplainSettings, build_explain_file
    from ferry.registry import Registry

    registry = Registry(registry_url)
    model = registry.models()[0]
    champion = registry.get(registry.channel(model, "online/champion") or "", model=model)
    schema = registry.schema(champion)
    reference = pd.read_parquet(io.BytesIO(registry.read_bytes(champion, "reference.parquet")))

    def evaluations(data: bytes) -> int:
        stored = ExplainFile.from_bytes(data)
        return int(stored.plan.masks.shape[0] * len(next(iter(stored.background.values()))))

    current = ExplainSettings()
    out = [
        (champion.id, f"registered ({current.background_rows} rows, budget {current.budget})",
         evaluations(registry.read_bytes(champion, "explain.npz"))),
    ]  # fmt: skip
    for rows, budget in PLANS[1:]:
        explain = build_explain_file(reference, schema, ExplainSettings(background_rows=rows, budget=budget))
        folder = work / f"plan-{rows}-{budget}"
        folder.mkdir(parents=True)
        files = {}
        for name in champion.files:
            data = explain if name == "explain.npz" else registry.read_bytes(champion, name)
            if name == "lineage.json":
                data = json.dumps({**json.loads(data), "note": f"explain plan {rows} rows {budget}"}).encode()
            (folder / name).write_bytes(data)
            files[name] = folder / name
        version = registry.register(model, files, dict(champion.info))
        out.append((version.id, f"{rows} rows, budget {budget}", evaluations(explain)))
    return out


def latencies(client: Any, path: str, body: dict[str, Any], n: int) -> list[float]:
    took = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post(path, json=body)
        took.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}: {response.text[:500]}")
    return took


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--registry", help="registry whose online/champion is served (default: train one)")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are printed)")
    args = parser.parse_args()

    import httpx

    from ferry.online.auth import hash_key
    from ferry.registry import Registry

    with tempfile.TemporaryDirectory(prefix="ferry-bench-explain-") as tmp_name:
        tmp = Path(tmp_name)
        registry_url = args.registry or train_registry(tmp)
        versions = plan_versions(registry_url, tmp / "plans")
        record = one_record(registry_url)
        port = free_port()
        env = server_env(tmp, registry_url)
        keys = [{"name": "bench", "sha256": hash_key(KEY), "scopes": ["predict", "explain"]}]
        env.update({"FERRY_ONLINE_API_KEYS": json.dumps(keys), "FERRY_ONLINE_POLL_INTERVAL_S": "0.2"})
        bentoml = Path(sys.executable).parent / "bentoml"
        log = (tmp / "serve.log").open("wb")
        process = subprocess.Popen(
            [str(bentoml), "serve", "service:Online", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO / "bentos" / "online", env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        registry = Registry(registry_url, actor="bench@ferry")
        model = registry.models()[0]
        rows = []
        try:
            wait_ready(url + "/readyz", process)
            headers = {"Authorization": f"Bearer {KEY}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                for version, label, evaluations in versions:
                    if registry.channel(model, "online/champion") != version:
                        registry.promote(version, "online/champion", reason="bench: explain plan", model=model)
                    deadline = time.monotonic() + 60
                    while client.post("/model").json().get("version") != version:
                        if time.monotonic() > deadline:
                            raise SystemExit(f"the service did not swap to {version} within 60 s")
                        time.sleep(0.1)
                    latencies(client, "/explain", {"records": record}, 20)  # warm both paths
                    latencies(client, "/predict", {"records": record}, 20)
                    p: dict[str, list[list[float]]] = {"/predict": [], "/explain": []}
                    for _ in range(args.rounds):
                        for path in p:
                            p[path].append(latencies(client, path, {"records": record}, args.requests))
                    got = {
                        (path, q): statistics.median(percentile(r, q) for r in p[path])
                        for path in p
                        for q in (0.5, 0.99)
                    }
                    rows.append((label, evaluations, got))
        finally:
            stop_process(process)
            log.close()
    print(f"one-record requests, {args.rounds} rounds x {args.requests} per endpoint, one at a time (ms, medians)")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    head = f"{'plan':<32} {'evals/row':>9} {'predict p50':>11} {'p99':>7} {'explain p50':>11} {'p99':>7}"
    print(head + f" {'ratio p50':>9} {'ratio p99':>9}")
    for label, evaluations, got in rows:
        pp50, pp99 = got[("/predict", 0.5)], got[("/predict", 0.99)]
        ep50, ep99 = got[("/explain", 0.5)], got[("/explain", 0.99)]
        print(
            f"{label:<32} {evaluations:>9} {pp50:>11.2f} {pp99:>7.2f} {ep50:>11.2f} {ep99:>7.2f}"
            f" {ep50 / pp50:>8.1f}x {ep99 / pp99:>8.1f}x"
        )


if __name__ == "__main__":
    main()
