"""Throughput and latency of the online service against a bare Starlette/uvicorn endpoint on the same model.

    uv run python bench/online.py [--registry DIR] [--duration 15] [--concurrency 1 8 32] [--workers 1]

Needs ``wrk`` on the PATH (Debian: ``apt-get install wrk``); the load generator is not Python, so it does not
compete with the servers for the interpreter. Both servers run one worker with onnxruntime at one intra-op thread
on 127.0.0.1, serve the version ``online/champion`` points to, and get the same single-record request body:

1. **bare**: a Starlette route that parses the JSON, builds the ONNX inputs by hand and runs the session (no
   validation, no auth, no logs): the practical limit;
2. **ferry**: ``bentoml serve service:Online`` from ``bentos/online`` with an API key, a limit of requests in
   flight per key (``--per-key``, default 32) and a share of predictions logged (``--sample-rate``, default 0.1):
   the request path with authentication, per-key limits and logging on.

``--workers N`` runs both with N worker processes: the bare endpoint as ``uvicorn --workers N``, ferry as
``ferry serve --workers N`` does (BentoML's ``workers`` of the service); CPU time counts every worker.

Without ``--registry`` a churn model is trained on 6,000 demo rows into a temporary directory first. Prints
req/s, p50, p99, non-2xx counts and the server's CPU time per request (user + system of the process that serves,
from /proc: less sensitive than req/s to other load on a shared machine) per server and concurrency, the ferry/bare
ratios, and the load average before and after. Both servers run at once and are measured in interleaved rounds
(``--rounds``, medians printed), so that other load on the machine weighs on both alike.

``--security`` measures what authentication and TLS cost instead, on the same ferry service run three ways at once,
measured in interleaved rounds (``--rounds``, medians printed):
``http`` (one API key: the baseline), ``http, 1000 keys`` (every request's key is compared, in constant time, with
every configured hash) and ``https`` (TLS through ``--ssl-certfile``/``--ssl-keyfile``, a certificate made in the
run; wrk keeps its connections, so this is TLS per request, not a handshake per request). There is no switch that
turns authentication off, so its own cost is also measured in process: the key check per request, with 1 and 1000
keys, against the service's CPU time per request.

``--bentoml-layers`` serves a third server, ``ferry-lean``: the same service without BentoML's OpenTelemetry and
timeout middlewares (``bench/bento_layers.py``, a patched app factory, for measuring only), so that the run says how
much of ferry's CPU per request is those two layers, which no setting removes.

``--encryption`` measures encryption at rest the same way, on two services that log every prediction
(``FERRY_ONLINE_PREDICTION_SAMPLE_RATE=1``): ``log in clear`` (the baseline) and ``log encrypted``
(``FERRY_ENCRYPTION_KEY_FILE`` set). The costs on batch scoring and on the monitor run are in ``bench/at_rest.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ferry.cli.processes import free_port, stop_process

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-key"
BARE_REGISTRY_ENV = "FERRY_BENCH_BARE_REGISTRY"
"""The registry the bare endpoint serves, for its workers (uvicorn builds the app in each worker)."""


def bare_app(registry_url: str) -> Any:
    """A Starlette app with one route: JSON in, the same onnxruntime session, JSON out."""
    import numpy as np
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from ferry.registry import Registry
    from ferry.schema import Schema
    from ferry.scoring import OnnxScorer

    registry = Registry(registry_url)
    model = registry.models()[0]
    version = registry.get(registry.channel(model, "online/champion") or "", model=model)
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    scorer = OnnxScorer(registry.read_bytes(version, "model.onnx"))
    numeric = set(schema.numeric_features)

    async def predict(request: Request) -> Response:
        record = json.loads(await request.body())["records"]
        inputs = {}
        for name in schema.feature_names:
            value = record.get(name)
            if name in numeric:
                inputs[name] = np.array([[np.nan if value is None else value]], dtype=np.float32)
            else:
                inputs[name] = np.array([["" if value is None else value]], dtype=object)
        scores = scorer.score(inputs)
        body = {"version": version.id, "probabilities": scores.probabilities[0].tolist()}
        return Response(json.dumps(body), media_type="application/json")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def bare_from_env() -> Any:
    """The bare app of the registry in ``$FERRY_BENCH_BARE_REGISTRY`` (uvicorn's factory, one per worker)."""
    return bare_app(os.environ[BARE_REGISTRY_ENV])


def train_registry(root: Path) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import loop

    from ferry import demo_data
    from ferry.registry import Registry

    schema = root / "schema.yaml"
    schema.write_text(demo_data.churn_schema().dump_yaml())
    data = demo_data.write_demo(root / "data", n_rows=6000, seed=11, fmt="parquet")
    registry = Registry(str(root / "registry"))
    loop(data, schema, registry, root / "runs")
    return registry.url


def one_record(registry_url: str) -> dict[str, Any]:
    from ferry import demo_data
    from ferry.registry import Registry
    from ferry.schema import Schema

    registry = Registry(registry_url)
    model = registry.models()[0]
    version = registry.get(registry.channel(model, "online/champion") or "", model=model)
    schema = Schema.from_dict(json.loads(registry.read_bytes(version, "schema.json")))
    frame = demo_data.make_churn(50, seed=5)
    row = json.loads(frame.iloc[[7]].to_json(orient="records", date_format="iso"))[0]
    return {name: row[name] for name in schema.feature_names}


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120, verify: Any = True) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2, verify=verify).status_code in (200, 405):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server not ready within {timeout_s} s")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"cannot read the latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, script: Path, concurrency: int, duration: int) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*timeout (\d+)", out)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "timeouts": float(errors.group(1)) if errors else 0.0,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children processes, in seconds."""
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def lua(path: Path, body: dict[str, Any], headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def server_env(tmp: Path, registry: str, *, sample_rate: float = 0.0, per_key: int | None = None) -> dict[str, str]:
    """The environment of a ferry service under test: one API key (``KEY``), the registry, one OpenMP thread; with
    ``sample_rate`` that share of predictions logged, with ``per_key`` that limit of requests in flight per key."""
    from ferry.online.auth import hash_key

    extra = {"FERRY_ONLINE_PREDICTION_SAMPLE_RATE": str(sample_rate)}
    if per_key is not None:
        extra["FERRY_ONLINE_MAX_IN_FLIGHT_PER_KEY"] = str(per_key)
    return {
        **extra,
        **os.environ,
        "BENTOML_HOME": str(tmp / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
        "FERRY_REGISTRY_URL": str(Path(registry).resolve()),
        "FERRY_ONLINE_API_KEYS": json.dumps([{"name": "bench", "sha256": hash_key(KEY), "scopes": ["predict"]}]),
        "OMP_NUM_THREADS": "1",
    }


def measure(
    servers: dict[str, tuple[list[str], Path, dict[str, str], str, str, Path]],
    args: argparse.Namespace,
    tmp: Path,
) -> dict[str, dict[int, dict[str, float]]]:
    """Start every server (name: command, directory, environment, ready URL, predict URL, wrk script), warm each
    up, then run wrk at each concurrency in interleaved rounds (each server once per round), so that other load on
    the machine weighs on all alike; medians per server and concurrency, with the server's CPU time per request."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    runs: dict[str, dict[int, list[dict[str, float]]]] = {n: {c: [] for c in args.concurrency} for n in servers}
    try:
        for name, (cmd, cwd, env, _, _, _) in servers.items():
            log = (tmp / f"{name}.log").open("wb")
            processes[name] = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        for name, (_, _, _, ready, url, script) in servers.items():
            wait_ready(ready, processes[name])
            wrk(url, script, 4, 3)  # warm-up
        for _ in range(args.rounds):
            for name, (_, _, _, _, url, script) in servers.items():
                for c in args.concurrency:
                    before = cpu_seconds(processes[name].pid)
                    run = wrk(url, script, c, args.duration)
                    used = cpu_seconds(processes[name].pid) - before
                    run["cpu_us"] = used / max(run["rps"] * args.duration, 1) * 1e6
                    runs[name][c].append(run)
    finally:
        for process in processes.values():
            stop_process(process)
    return {
        name: {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in by_c.items()}
        for name, by_c in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--registry", help="registry whose online/champion is served (default: train one)")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None, help="default 1 8 32 (--security: 8)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of both servers")
    parser.add_argument("--sample-rate", type=float, default=0.1, help="ferry: share of predictions logged")
    parser.add_argument("--per-key", type=int, default=32, help="ferry: requests in flight per key (0: no limit)")
    parser.add_argument("--security", action="store_true", help="authentication and TLS on against off (see above)")
    parser.add_argument("--encryption", action="store_true", help="the prediction log encrypted against in clear")
    parser.add_argument(
        "--bentoml-layers",
        action="store_true",
        help="also serve ferry without BentoML's OpenTelemetry and timeout middlewares (measuring only)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are printed)")
    parser.add_argument("--serve-bare", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        import uvicorn

        os.environ[BARE_REGISTRY_ENV] = args.serve_bare
        uvicorn.run(
            f"{Path(__file__).stem}:bare_from_env",
            factory=True,
            app_dir=str(Path(__file__).parent),
            workers=args.workers,
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
        )
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed; on Debian: apt-get install wrk")
    if args.security or args.encryption:
        args.concurrency = args.concurrency or [8]
        security(args)
        return
    args.concurrency = args.concurrency or [1, 8, 32]

    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-online-"))
    try:
        registry = args.registry or train_registry(tmp)
        body = {"records": one_record(registry)}

        from ferry.cli.processes import workers_env

        per_key = args.per_key or None
        env = server_env(tmp, registry, sample_rate=args.sample_rate, per_key=per_key)
        env.update(workers_env(args.workers, env))
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        servers = {}
        names = ("bare", "ferry", "ferry-lean") if args.bentoml_layers else ("bare", "ferry")
        for name in names:
            port = free_port()
            if name == "bare":
                cmd = [sys.executable, __file__, "--serve-bare", env["FERRY_REGISTRY_URL"], "--port", str(port)]
                cmd += ["--workers", str(args.workers)]
                cwd, ready, headers = REPO, f"http://127.0.0.1:{port}/predict", {"Content-Type": "application/json"}
            else:
                lean = name == "ferry-lean"
                cmd = [str(Path(sys.executable).parent / "bentoml"), "serve"]
                cmd += ["bento_layers:Online" if lean else "service:Online", "--host", "127.0.0.1", "--port", str(port)]
                cwd = REPO / "bench" if lean else REPO / "bentos" / "online"
                ready = f"http://127.0.0.1:{port}/readyz"
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
            script = lua(tmp / f"{name}.lua", body, headers)
            servers[name] = (cmd, cwd, env, ready, f"http://127.0.0.1:{port}/predict", script)
        results = measure(servers, args, tmp)
        print(
            f"online predict, one record per request: medians of {args.rounds} interleaved rounds of {args.duration} s "
            f"per server, wrk -t1 on 127.0.0.1, {args.workers} worker(s) each"
        )
        print(f"load average before: {load_before}, after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        head = f"{'server':10} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'timeouts':>8}"
        print(head + f" {'cpu us/req':>10}")
        for name, runs in results.items():
            for c, r in runs.items():
                print(
                    f"{name:10} {c:>4} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                    f"{r['non2xx']:>8.0f} {r['timeouts']:>8.0f} {r['cpu_us']:>10.0f}"
                )
        for name in names[1:]:
            for c in args.concurrency:
                b, f = results["bare"][c], results[name][c]
                print(
                    f"c={c}: {name}/bare throughput {f['rps'] / b['rps']:.2f}x, "
                    f"cpu per request {f['cpu_us'] / b['cpu_us']:.2f}x, p50 {f['p50'] / b['p50']:.2f}x, "
                    f"p99 {f['p99'] / b['p99']:.2f}x, "
                    f"{name} p99/p50 {f['p99'] / f['p50']:.1f}x, bare p99/p50 {b['p99'] / b['p50']:.1f}x"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def auth_check_us(n_keys: int, rounds: int = 20_000) -> float:
    """Microseconds one request's key check takes in process with ``n_keys`` configured keys (the key is the last)."""
    from ferry.online.auth import KeyStore, hash_key
    from ferry.online.settings import ApiKeyEntry

    entries = [ApiKeyEntry(name=f"k{i}", sha256=hash_key(f"key-{i}"), scopes=("predict",)) for i in range(n_keys)]
    store = KeyStore(entries)
    key = f"key-{n_keys - 1}"
    started = time.perf_counter()
    for _ in range(rounds):
        store.check(key, "predict")
    return (time.perf_counter() - started) / rounds * 1e6


def security(args: argparse.Namespace) -> None:
    """ferry over HTTP with one key, with 1000 keys, and over HTTPS: throughput and p99, as ratios to the first."""
    sys.path.insert(0, str(REPO / "tests"))
    from tls_support import make_certs

    from ferry.online.auth import hash_key

    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-security-"))
    try:
        registry = args.registry or train_registry(tmp)
        body = {"records": one_record(registry)}
        certs = make_certs(tmp / "certs")
        many = [{"name": f"k{i}", "sha256": hash_key(f"other-{i}"), "scopes": ["predict"]} for i in range(999)]
        (tmp / "keys.json").write_text(json.dumps(many))
        base = server_env(tmp, registry)
        variants: list[tuple[str, dict[str, str], list[str]]] = [
            ("http", {}, []),
            ("http, 1000 keys", {"FERRY_ONLINE_API_KEYS_FILE": str(tmp / "keys.json")}, []),
            ("https", {}, ["--ssl-certfile", str(certs.server_cert), "--ssl-keyfile", str(certs.server_key)]),
        ]
        if args.encryption:
            from ferry.storage import sealed

            (tmp / "data.key").write_text(sealed.new_key_hex() + "\n")
            logged = {"FERRY_ONLINE_PREDICTION_SAMPLE_RATE": "1"}
            key = {**logged, "FERRY_ENCRYPTION_KEY_FILE": str(tmp / "data.key")}
            variants = [("log in clear", logged, []), ("log encrypted", key, [])]
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        script = lua(tmp / "ferry.lua", body, headers)
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        runs: dict[str, dict[int, list[dict[str, float]]]] = {
            name: {c: [] for c in args.concurrency} for name, *_ in variants
        }
        try:
            for name, env, tls in variants:  # all three up at once, so that the rounds interleave
                port = free_port()
                scheme = "https" if tls else "http"
                cmd = [str(Path(sys.executable).parent / "bentoml"), "serve", "service:Online"]
                cmd += ["--host", "127.0.0.1", "--port", str(port), *tls]
                log = (tmp / f"{port}.log").open("wb")
                process = subprocess.Popen(
                    cmd, cwd=REPO / "bentos" / "online", env={**base, **env}, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
                servers[name] = (process, f"{scheme}://127.0.0.1:{port}")
                wait_ready(servers[name][1] + "/readyz", process, verify=str(certs.ca))
                wrk(servers[name][1] + "/predict", script, 4, 3)  # warm-up
            for _ in range(args.rounds):
                for name, (process, base_url) in servers.items():
                    for c in args.concurrency:
                        before = cpu_seconds(process.pid)
                        run = wrk(base_url + "/predict", script, c, args.duration)
                        used = cpu_seconds(process.pid) - before
                        run["cpu_us"] = used / max(run["rps"] * args.duration, 1) * 1e6
                        runs[name][c].append(run)
        finally:
            for process, _ in servers.values():
                stop_process(process)
        results = {
            name: {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in by_c.items()}
            for name, by_c in runs.items()
        }
        what = "encryption at rest, every prediction logged" if args.encryption else "authentication and TLS"
        print(
            f"online predict with {what}: medians of {args.rounds} interleaved rounds of "
            f"{args.duration} s per service, wrk -t1 on 127.0.0.1, 1 worker"
        )
        print(f"load average before: {load_before}, after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'service':16} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'cpu us/req':>10}")
        for name, by_conc in results.items():
            for c, r in by_conc.items():
                print(
                    f"{name:16} {c:>4} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['non2xx']:>8.0f} "
                    f"{r['cpu_us']:>10.0f}"
                )
        baseline, *others = results
        for c in args.concurrency:
            b = results[baseline][c]
            for name in others:
                r = results[name][c]
                print(
                    f"c={c}: {name} / {baseline}: throughput {r['rps'] / b['rps']:.2f}x, "
                    f"p99 {r['p99'] / b['p99']:.2f}x, cpu per request {r['cpu_us'] / b['cpu_us']:.2f}x"
                )
            if args.encryption:
                continue
            one, thousand = auth_check_us(1), auth_check_us(1000)
            print(
                f"c={c}: the key check in process: {one:.1f} us with 1 key, {thousand:.1f} us with 1000 keys: "
                f"{one / b['cpu_us']:.1%} and {thousand / b['cpu_us']:.1%} of the service's cpu per request"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
