"""``ferry demo``: one release through every surface, and the loop closed (its steps: :mod:`ferry.cli.demo_steps`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ferry.cli.app import app
from ferry.cli.common import RegistryOpt, console, fail, open_registry, retrain_flow
from ferry.errors import FerryError


@app.command()
def demo(
    rows: Annotated[int, typer.Option(min=2000, max=2_000_000, help="Rows in each demo batch.")] = 20_000,
    drift: Annotated[float, typer.Option(min=0.0, max=1.0, help="Drift of the second batch (0 to 1).")] = 0.8,
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo data is written.")] = Path(".ferry/demo"),
    sample_rows: Annotated[
        int, typer.Option("--sample-rows", min=300, max=20_000, help="Drifted rows each surface sees.")
    ] = 2000,
    registry: RegistryOpt = None,
) -> None:
    """One release through every surface, and the loop closed: train and serve a first model, let drifted data
    arrive online, in batch and on a device, detect it, retrain, stage the candidate as challenger, promote it after
    its window, and check that online, batch and edge answer bit for bit the same."""
    from contextlib import ExitStack

    from ferry import demo_data as demo_mod
    from ferry.cli import demo_steps as cli_demo
    from ferry.cli.status import status
    from ferry.cli.views import print_outcome

    out = console()
    schema = demo_mod.churn_schema()
    try:
        flow = retrain_flow()
        reg = open_registry(registry)
        if not cli_demo.has_extra("bentoml", "ferry_edge", "tuf"):
            raise FerryError("the demo needs every extra: uv sync --all-extras (or pip install 'ferry[online,edge]')")
        from ferry.cli.processes import StaticHost
        from ferry.monitor import MonitorSettings
        from ferry.monitor.rollout import RolloutSettings
        from ferry.settings import EdgeSettings
        from ferry_flows.monitor import monitor

        edge = EdgeSettings()
        repo_dir = Path(edge.repo_url)
        if any("://" in u for u in (edge.repo_url, edge.keys_dir)):  # a static host serves the repository to devices
            raise FerryError(
                "the demo publishes its edge repository to a local directory; unset FERRY_EDGE_REPO_URL and "
                "FERRY_EDGE_KEYS_DIR (the registry may be on an object store)"
            )
        cli_demo.fresh_world(reg.url, repo_dir, Path(edge.keys_dir), directory)
        schema_path = directory / "schema.yaml"
        # the production data of the demo: where a drift-triggered retrain of the deployments reads (prefect.yaml)
        schema = schema.model_copy(update={"data": str((directory / "drifted").resolve())})
        schema_path.write_text(schema.dump_yaml())
        with ExitStack() as stack:
            out.rule("[bold]1. baseline data: train the first model, promote it online and to edge/stable")
            base = demo_mod.write_demo(directory / "baseline", n_rows=rows, seed=1, drift=0.0, fmt="parquet")
            first = flow(
                data=str(base),
                schema_file=str(schema_path),
                registry_url=reg.url,
                promote_to=["online/champion", "edge/stable"],
            )
            print_outcome(first)

            out.rule("[bold]2. serve it: bentoml serve, and a device syncing from a static host")
            service = stack.enter_context(cli_demo.DemoService(reg, directory))
            out.print(f"online service on {service.url} (log: {service.log})")
            drifted_path = demo_mod.write_demo(
                directory / "drifted", n_rows=rows, seed=2, drift=drift, fmt="parquet", start="2026-01-01"
            )
            frame, sample = cli_demo.sample(pd_read(drifted_path), schema, sample_rows)
            served = cli_demo.show_answers(service, sample[:3], schema, "POST /predict, three customers:")
            host = stack.enter_context(StaticHost(repo_dir))
            device = cli_demo.DemoDevice(directory / "device-1", repo_dir, host, first["model"], service)
            device.sync()

            out.rule(f"[bold]3. drifted data arrives (drift={drift}): online traffic, a batch run, a device")
            cli_demo.send_traffic(service, sample)
            out.print(f"online: {len(sample):,} drifted records answered and logged")
            cli_demo.batch_step(reg, frame, directory, "before")
            device.predict_and_report(sample[: len(sample) // 2])

            out.rule("[bold]4. the monitor flow compares production with the champion's reference")
            settings = MonitorSettings(min_rows=200)
            window = RolloutSettings(window_hours=0, min_rows=min(500, len(sample) // 2))
            found = monitor(model=first["model"], registry_url=reg.url, settings=settings, rollout_settings=window)
            cli_demo.print_monitor(found)
            asks = [a for a in found["announcements"] if a["retrain"]]
            if not asks:
                raise FerryError("the monitor saw no drift worth a retrain; try a larger --drift")

            out.rule("[bold]5. the retrain the drift event asks for (what the automation in prefect.yaml runs)")
            summary = next(j for j in found["judgements"] if j["source"] == asks[0]["source"])
            reason = f"drift: {asks[0]['source']}: {', '.join(summary['drifted_features'])} drifted"
            second = flow(
                data=str(drifted_path),
                schema_file=str(schema_path),
                registry_url=reg.url,
                promote_to=["online/challenger", "edge/beta"],
                min_new_rows=500,
                reason=reason,
            )
            print_outcome(second)
            candidate = second.get("version")
            if not second.get("promoted"):
                raise FerryError(f"the candidate {candidate} was not staged: {second.get('reasons')}")

            out.rule("[bold]6. the observation window: the challenger shadows live traffic, then the monitor decides")
            cli_demo.wait_for_challenger(service, sample, str(candidate))
            cli_demo.send_traffic(service, sample, shadow=str(candidate))
            out.print(f"online: {len(sample):,} more records; {candidate} scored each in shadow, unseen by callers")
            decided = monitor(model=first["model"], registry_url=reg.url, settings=settings, rollout_settings=window)
            cli_demo.print_monitor(decided)
            rollout = decided.get("rollout") or {}
            if rollout.get("decision") != "promote":
                why = "; ".join(rollout.get("reasons", []))
                raise FerryError(f"the rollout did not promote {candidate}: {rollout.get('decision')} ({why})")
            champion = reg.channel(first["model"], "online/champion")

            out.rule("[bold]7. everyone on the new champion")
            cli_demo.wait_for_version(service, sample, str(champion))
            note = "the same service, not restarted, followed the channel pointer"
            cli_demo.show_answers(service, sample[:3], schema, f"POST /predict again ({note}; was {served}):")
            device.sync()
            device.predict_and_report(sample[:300])
            output, _ = cli_demo.batch_step(reg, frame, directory, "after")
            monitor(
                model=first["model"], registry_url=reg.url, settings=settings, rollout_settings=window,
                online_url=service.url,
            )  # fmt: skip

            out.rule("[bold]8. parity: the same rows online, in batch and on the device")
            cli_demo.parity_step(cli_demo.surfaces_scores(service, output, device, sample, schema))
            status(registry=reg.url, online_url=service.url, api_key=service.key, model=None)
    except FerryError as exc:
        raise fail(exc) from exc


def pd_read(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)
