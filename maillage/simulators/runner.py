"""One scenario run: territory, anomaly plan and labels, registration, then the publish loop."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maillage.config import Settings
from maillage.simulators.anomalies import LabelWriter
from maillage.simulators.engine import Engine
from maillage.simulators.payloads import iso
from maillage.simulators.progress import LiveView, summary
from maillage.simulators.publisher import FileSink, MqttSink, Pacer, Sink, Stats, run
from maillage.simulators.registration import read_credentials, register, write_import_file
from maillage.simulators.scenario import Scenario
from maillage.simulators.territory import build_territory
from maillage.stack.state import database_url, file_auth, mqtt_admin, running_state

log = logging.getLogger(__name__)


# When accelerated without a start, begin this far in the past (the run catches up with now).
DEFAULT_BACKFILL = timedelta(days=7)


def resolve_start(sc: Scenario, duration_s: float) -> datetime:
    """The simulated start: given, now (real time), or in the past so acceleration ends near now."""
    if sc.start is not None:
        return sc.start
    now = datetime.now(UTC).replace(microsecond=0)
    if sc.speed <= 1:
        return now
    back = timedelta(seconds=duration_s * sc.speed) if duration_s > 0 else DEFAULT_BACKFILL
    return now - back


def default_labels_path(settings: Settings, tenant: str) -> Path:
    """Where an MQTT run keeps its labels when none was asked for (appended run after run)."""
    return settings.data_dir / "simulator" / f"{tenant}-labels.jsonl"


def simulate_scenario(sc: Scenario, *, settings: Settings, duration_s: float,
                      labels_path: Path | None, registration_file: Path | None,
                      dry_run_out: Path | None, stop: threading.Event,
                      credentials_file: Path | None = None) -> dict[str, object]:
    """Run a scenario until its duration, a stop request, or forever; return the summary."""
    territory = build_territory(sc)
    specs = territory.specs()
    if registration_file is not None and dry_run_out is None:
        write_import_file(registration_file, sc.tenant, specs)
        return {"registration_file": str(registration_file), "devices": len(specs),
                "tenant": sc.tenant}
    stats = Stats(devices=len(specs))
    append_labels = False
    with ExitStack() as stack:
        sink: Sink
        if dry_run_out is not None:
            sink = FileSink(dry_run_out, sc.tenant, stats=stats)
            start = resolve_start(sc, duration_s)
            pacer = Pacer(start, sc.speed, unpaced=True)
            deadline = None
        else:
            if credentials_file is not None:
                creds = read_credentials(credentials_file)
            else:
                creds = register(database_url=database_url(settings),
                                 mqtt_admin=mqtt_admin(settings), tenant=sc.tenant,
                                 tenant_name=sc.tenant_name, timezone=sc.timezone, specs=specs,
                                 broker=file_auth(settings))
            stats.registration_s = stats.elapsed
            # Real time starts once every device is registered: readings are stamped "now".
            start = resolve_start(sc, duration_s)
            if labels_path is None:
                labels_path = default_labels_path(settings, sc.tenant)
                labels_path.parent.mkdir(parents=True, exist_ok=True)
                append_labels = True
        labels = LabelWriter(labels_path, sc.tenant, on_label=lambda inj: _count(stats),
                             append=append_labels)
        stack.callback(labels.close)
        engine = Engine(sc, start=start, territory=territory, labels=labels)
        if dry_run_out is None:
            state = running_state(settings)
            mqtt_sink = MqttSink(state.mqtt_host, state.mqtt_port, creds, stats=stats,
                                 listeners=engine.commandable())
            stack.callback(mqtt_sink.close)
            mqtt_sink.open()
            sink = mqtt_sink
            pacer = Pacer(start, sc.speed)
            deadline = time.time() + duration_s if duration_s > 0 else None
            stats.started = time.monotonic()
        else:
            stack.callback(sink.close)
        until = start + timedelta(seconds=duration_s * sc.speed) if duration_s > 0 else None
        view = stack.enter_context(LiveView(stats, title=f"maillage simulate - {sc.tenant}"))
        log.info("simulating %d devices of tenant %s from %s at x%g", len(specs), sc.tenant,
                 start.isoformat(), sc.speed)
        run(engine.publications(until), sink, pacer, stop, wall_deadline=deadline,
            on_tick=view.tick, on_command=engine.command)
    result = summary(stats)
    result["start"] = iso(start)
    result["tenant"] = sc.tenant
    if labels_path is not None:
        result["labels"] = str(labels_path)
    return result


def _count(stats: Stats) -> None:
    stats.labels += 1
