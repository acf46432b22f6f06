"""Figures for the edge agent, each against a baseline measured in the same run.

    uv run python bench/edge.py              # every figure
    uv run python bench/edge.py --latency    # only the in-process single-row figures (no venvs, no cold starts)

- install size of the agent's environment vs onnxruntime + numpy alone (two fresh virtual environments);
- cold start (process start, imports, model load, first prediction), median of 7, vs the same with bare onnxruntime;
- single-row latency p50/p99 in-process through the agent vs onnxruntime on prepared arrays;
- single-row explain p50/p99 (``EdgeModel.explain``, the default top 5) vs the agent's own predict, same row;
- bundle size vs model.onnx.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def site_size(venv: Path) -> int:
    site = next(venv.glob("lib/python*/site-packages"))
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file())


def make_venv(path: Path, *packages: str) -> int:
    found = shutil.which("uv")
    uv = [found] if found else ["python3", "-m", "uv"]  # the scripts install uv for the system python
    subprocess.run([*uv, "venv", "-q", "--python", sys._base_executable, str(path)], check=True)
    # --python names the environment: run as `python -m uv`, uv would otherwise install into the calling interpreter
    subprocess.run([*uv, "pip", "install", "-q", "--python", str(path / "bin" / "python"), *packages], check=True)
    return site_size(path)


def cold(cmd: list[str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[int(q * (len(xs) - 1))] * 1e3


def timed(calls: list[Callable[[], object]], runs: int) -> list[list[float]]:
    """Each call's durations over ``runs`` rounds, the calls interleaved so that load on the machine hits all alike."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(runs):
        for i, call in enumerate(calls):
            t = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description="Figures for the edge agent against baselines in the same run.")
    parser.add_argument("--latency", action="store_true", help="only the in-process single-row figures")
    latency_only = parser.parse_args().latency
    from helpers import loop

    from ferry import demo_data
    from ferry.publish.bundle import build_bundle
    from ferry.publish.tufrepo import KeyStore, TufRepository, target_name
    from ferry.registry import Registry

    with tempfile.TemporaryDirectory(prefix="ferry-edge-bench-") as tmp:
        root = Path(tmp)
        schema = root / "schema.yaml"
        schema.write_text(demo_data.churn_schema().dump_yaml())
        data = demo_data.write_demo(root / "data", n_rows=5000, seed=1, fmt="parquet")
        registry = Registry(str(root / "registry"))
        version, _, _ = loop(data, schema, registry, root / "runs")
        model_bytes = registry.read_bytes(version, "model.onnx")
        bundle = build_bundle(registry, version)
        repo = TufRepository(str(root / "repo"), KeyStore(root / "keys"))
        repo.init()
        repo.publish(target_name("churn", "edge/stable"), bundle.data)
        port_proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root / "repo")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            line = port_proc.stdout.readline() if port_proc.stdout else ""
            port = int(line.split("port ")[1].split()[0])
            url = f"http://127.0.0.1:{port}"
            for _ in range(50):
                try:
                    urllib.request.urlopen(url, timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            from ferry_edge.agent import Agent

            agent = Agent.init(
                root / "device", repo_url=url, model="churn", channel="edge/stable", trusted_root=repo.trusted_root()
            )
            agent.sync()
        finally:
            port_proc.terminate()
            port_proc.wait()

        model = agent.active()
        row = model.manifest["golden"]["rows"][0]
        prepared = model.prepare([row])
        # in-process latency: the agent's predict against raw onnxruntime, and its explain against its predict
        agent_t, raw_t = timed([lambda: model.predict([row]), lambda: model.session.run(None, prepared)], 3000)
        model.explain([row])  # reads explain.npz once, as a device's first explanation does
        explain_t, predict_t = timed([lambda: model.explain([row]), lambda: model.predict([row])], 300)
        figures = [
            ("single row p50 (ms)", pct(agent_t, 0.5), pct(raw_t, 0.5)),
            ("single row p99 (ms)", pct(agent_t, 0.99), pct(raw_t, 0.99)),
            ("explain vs predict, single row p50 (ms)", pct(explain_t, 0.5), pct(predict_t, 0.5)),
            ("explain vs predict, single row p99 (ms)", pct(explain_t, 0.99), pct(predict_t, 0.99)),
        ]
        evaluations = model.explain_file().masks.shape[0] * len(next(iter(model.explain_file().background.values())))
        if latency_only:
            report(figures)
            print(f"explain: {evaluations} model evaluations per row (coalitions x background rows), one call")
            return

        (root / "row.json").write_text(json.dumps(row))
        (root / "model.onnx").write_bytes(model_bytes)
        agent_cold = cold(
            [
                sys.executable,
                "-c",
                "import json,sys; from ferry_edge.agent import Agent;"
                f"Agent({str(root / 'device')!r}).active().predict([json.load(open({str(root / 'row.json')!r}))])",
            ]
        )
        raw_cold = cold(
            [
                sys.executable,
                "-c",
                "import numpy as np, onnxruntime as ort, json;"
                f"s = ort.InferenceSession({str(root / 'model.onnx')!r}, providers=['CPUExecutionProvider']);"
                f"row = json.load(open({str(root / 'row.json')!r}));"
                "feeds = {i.name: (np.array([[row[i.name] if row[i.name] is not None else np.nan]], np.float32)"
                " if i.type == 'tensor(float)' else np.array([[row[i.name] or '']], object)) for i in s.get_inputs()};"
                "s.run(None, feeds)",
            ]
        )
        base_size = make_venv(root / "venv-ort", "onnxruntime", "numpy")
        agent_size = make_venv(root / "venv-agent", str(REPO / "edge"))

    mb = 1024 * 1024
    rows = [
        ("install size (MB)", agent_size / mb, base_size / mb),
        ("cold start, median (s)", agent_cold, raw_cold),
        *figures,
        ("bundle vs model.onnx (KB)", len(bundle.data) / 1024, len(model_bytes) / 1024),
    ]
    report(rows)
    print(f"{'added by the agent (MB)':<42}{(agent_size - base_size) / mb:>12.1f}")
    print("baselines: a venv with onnxruntime+numpy only; bare onnxruntime on the same row and model; explain: the")
    print(f"agent's own predict on the same row ({evaluations} model evaluations per explained row, one call)")


def report(rows: list[tuple[str, float, float]]) -> None:
    print(f"{'figure':<42}{'agent':>12}{'baseline':>12}{'ratio':>8}")
    for name, mine, base in rows:
        print(f"{name:<42}{mine:>12.3f}{base:>12.3f}{mine / base:>8.2f}")


if __name__ == "__main__":
    main()
