"""`maillage simulate`: build a territory, register its devices, publish its life over MQTT."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.simulators.scenario import ScenarioError, build_scenario


@clean_errors
def simulate(
    scenario: Annotated[Path | None, typer.Option("--scenario", help="Scenario file (YAML or TOML).",
                                                  exists=True, dir_okay=False)] = None,
    demo: Annotated[bool, typer.Option("--demo", help="The built-in demo territory.")] = False,
    meters: Annotated[int | None, typer.Option(help="Number of electricity meters.")] = None,
    streetlights: Annotated[int | None, typer.Option(help="Number of streetlights.")] = None,
    care_homes: Annotated[int | None, typer.Option("--care-homes",
                                                   help="Number of care dwellings.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant (created if missing).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed: same seed, same data.")] = None,
    start: Annotated[str | None, typer.Option(help="Simulated start, ISO 8601.")] = None,
    speed: Annotated[float | None, typer.Option(help="Time acceleration (1 = real time).")] = None,
    duration: Annotated[float, typer.Option(help="Wall seconds to run (0 = until stopped).")] = 0,
    labels: Annotated[Path | None, typer.Option(
        help="Write injected anomalies here (JSONL); default <data dir>/simulator/<tenant>-labels.jsonl "
             "(appended) when publishing.")] = None,
    registration_file: Annotated[Path | None, typer.Option(
        "--registration-file", help="Write a CSV for `maillage devices import` and stop.")] = None,
    load: Annotated[bool, typer.Option("--load", help="Load mode (see docs/simulators.md).")] = False,
    devices: Annotated[int, typer.Option(help="Load mode: number of devices.")] = 100_000,
    rate: Annotated[float, typer.Option(
        help="Load mode: target device readings (device messages) per second.")] = 20_000,
    connections: Annotated[int, typer.Option(
        help="Load mode: relays, each one MQTT session forwarding for its devices.")] = 100,
    batch: Annotated[int, typer.Option(help="Load mode: device readings per relayed pack.")] = 10,
    relay_type: Annotated[str, typer.Option(
        "--relay-type", help="Load mode: care_hub (residence gateways relaying care sensors), "
                             "lighting_cabinet (lamps) or meter (concentrators).")] = "care_hub",
    credentials: Annotated[Path | None, typer.Option(
        help="Use these credentials (CSV of `devices import --credentials-out`) instead of "
             "registering.", exists=True, dir_okay=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write publications to --out, no MQTT.")] = False,
    out: Annotated[Path | None, typer.Option(help="Dry run: output file (JSON lines).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Simulate a territory (meters, streetlights, care homes) with labelled anomalies."""
    settings = settings_for(data_dir, "simulate")
    stop = threading.Event()
    _install_stop(stop)
    if load:
        # Imported here: only this command needs it, and every `maillage` process loads the CLI.
        from maillage.simulators.load import run_load

        print_json(run_load(settings=settings, tenant=tenant or "load", devices=devices, rate=rate,
                            connections=connections, batch=batch, relay_type=relay_type,
                            duration_s=duration,
                            seed=seed or 1, registration_file=registration_file, stop=stop))
        return
    sc = build_scenario(scenario_file=scenario, demo=demo, meters=meters,
                        streetlights=streetlights, care_homes=care_homes, tenant=tenant,
                        seed=seed, start=start, speed=speed)
    # Imported here: only this command needs it, and every `maillage` process loads the CLI.
    from maillage.simulators.runner import simulate_scenario

    if dry_run and out is None:
        raise ScenarioError("--dry-run needs --out FILE")
    if dry_run and duration <= 0:
        raise ScenarioError("--dry-run needs --duration (simulated span = duration x speed)")
    result = simulate_scenario(sc, settings=settings, duration_s=duration, labels_path=labels,
                               registration_file=registration_file,
                               dry_run_out=out if dry_run else None, credentials_file=credentials,
                               stop=stop)
    print_json(result)


def _install_stop(stop: threading.Event) -> None:
    """SIGTERM (from `maillage up`) and Ctrl-C both end the run cleanly."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, even mid-registration
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
