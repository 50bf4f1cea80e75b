"""`maillage up`: start every part in order, write the state file, watch, stop in reverse order.

A child that dies is started again after a back-off (1 s, doubling up to 30 s, reset once it
has run for a minute), with a log line each time: a short database or broker outage, or one
crashed process, never stops the whole stack.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import psycopg

from maillage.config import Settings
from maillage.db.migrate import migrate
from maillage.errors import StackError
from maillage.stack import apache_kafka, kafka, mosquitto, postgres
from maillage.stack.process import ManagedProcess, free_port, port_is_free, wait_for_port
from maillage.stack.state import StackState, read_state

log = logging.getLogger(__name__)

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 15.0
"""A child that ran this long is healthy again: its next restart waits RESTART_FIRST_S."""


def _maillage(*args: str) -> list[str]:
    return [sys.executable, "-m", "maillage", *args]


class Supervisor:
    """Owns the children of `maillage up`; `stop()` (from a signal) ends `run()`."""

    def __init__(self, settings: Settings, *, simulate: bool = False,
                 simulate_args: list[str] | None = None) -> None:
        self.settings = settings
        self.simulate = simulate
        self.simulate_args = simulate_args or ["--demo"]
        self.data_dir = settings.data_dir.resolve()
        self.procs: list[ManagedProcess] = []
        self._stop = threading.Event()
        self.state = StackState(up_pid=os.getpid())
        self.restarts: dict[str, int] = {}
        self._backoff: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def stop(self, *_: object) -> None:
        self._stop.set()

    def _child(self, proc: ManagedProcess) -> ManagedProcess:
        if not proc.alive():
            proc.start()
        self.procs.append(proc)
        self.state.pids[proc.name] = proc.pid
        self._started[proc.name] = time.monotonic()
        return proc

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MAILLAGE_DATA_DIR"] = str(self.data_dir)
        prom = self.data_dir / "prometheus"
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
        return env

    def start(self) -> StackState:
        """Start everything; returns the state once every part listens."""
        old = read_state(self.data_dir)
        if old is not None and old.running():
            raise StackError(f"a stack already runs from {self.data_dir} (pid {old.up_pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logs = self.data_dir / "logs"
        prom = self.data_dir / "prometheus"
        prom.mkdir(exist_ok=True)
        for f in prom.glob("*.db"):
            f.unlink()
        s = self.settings
        # 1. database
        if s.database_url:
            db_url = s.database_url
        else:
            proc, db_url = postgres.start(self.data_dir / "postgres", free_port())
            self._child(proc)
            self.state.embedded.append("postgres")
        self.state.database_url = db_url
        migrate(db_url)
        # 2. MQTT
        if s.mqtt_url:
            raise StackError("an external MQTT broker (MAILLAGE_MQTT_URL) is not supported by "
                             "`maillage up` yet; use docker-compose for that")
        mport = free_port()
        # Device credentials come from the registry: render them before the broker reads them.
        from maillage.registry.broker_auth import render

        (self.data_dir / "mosquitto").mkdir(parents=True, exist_ok=True)
        with psycopg.connect(db_url, autocommit=True) as conn:
            render(conn, self.data_dir / "mosquitto")
        mproc, _ = mosquitto.start(self.data_dir / "mosquitto", mport)
        self._child(mproc)
        self.state.embedded.append("mosquitto")
        self.state.mqtt_port = mport
        # 3. Kafka
        if s.kafka_bootstrap:
            bootstrap = s.kafka_bootstrap
        else:
            kport = free_port()
            began = time.monotonic()
            if s.kafka_kind == "apache":
                kproc = apache_kafka.start(self.data_dir, kport)
            else:
                kproc = kafka.start(self.data_dir, kport)
            self._child(kproc)
            self.state.embedded.append("kafka")
            self.state.kafka_kind = s.kafka_kind
            self.state.kafka_start_s = round(time.monotonic() - began, 1)
            bootstrap = f"127.0.0.1:{kport}"
        self.state.kafka_bootstrap = bootstrap
        tansu = "kafka" in self.state.embedded and s.kafka_kind == "tansu"
        kafka.ensure_topics_sync(bootstrap, s.topic_partitions(embedded=tansu))
        # State first: the children find the stack through it.
        api_port = s.api_port if port_is_free(s.api_port, s.api_host) else free_port(s.api_host)
        self.state.api_url = f"http://{s.api_host}:{api_port}"
        self.state.write(self.data_dir)
        env = self._env()
        dd = ["--data-dir", str(self.data_dir)]
        if s.runs("storage"):
            for i in range(s.storage_processes):
                self._child(ManagedProcess(f"storage-{i}", _maillage("processor", "storage", *dd),
                                           logs / f"storage-{i}.log", env=env))
        # maintenance: rollups, partitions, retention. savings: metered (CalTRACK, opendsm) and
        # lighting savings, recomputed when their data changed. detection: one process, as group
        # rules need a dwelling's or cabinet's devices together. alerting: alerts from anomalies,
        # escalation, notifications. commands: télégestion (outbox -> Kafka -> MQTT down/cmd,
        # acks, retries). control: adaptive lighting and demand response.
        for name in ("maintenance", "savings", "detection", "alerting", "commands", "control"):
            if s.runs(name):
                self._child(ManagedProcess(name, _maillage("processor", name, *dd),
                                           logs / f"{name}.log", env=env))
        for i in range(s.gateway_processes):
            self._child(ManagedProcess(f"gateway-{i}", _maillage("gateway", "--instance", str(i), *dd),
                                       logs / f"gateway-{i}.log", env=env))
        api = self._child(ManagedProcess("api", _maillage("api", "--host", s.api_host, "--port",
                                                          str(api_port), *dd),
                                         logs / "api.log", env=env))
        wait_for_port(s.api_host, api_port, 60, api)
        self.state.write(self.data_dir)
        if self.simulate:
            self._child(ManagedProcess("simulator", _maillage("simulate", *self.simulate_args, *dd),
                                       logs / "simulator.log", env=env))
            self.state.write(self.data_dir)
        return self.state

    def watch(self) -> None:
        """Block until stop(), starting again, after a back-off, any child that died."""
        while not self._stop.wait(0.5):
            self.revive(time.monotonic())

    def revive(self, now: float) -> None:
        """Restart the children that died and whose back-off has passed."""
        changed = False
        for proc in self.procs:
            if proc.alive():
                continue
            name = proc.name
            due = self._due.get(name)
            if due is None:
                ran = now - self._started.get(name, now)
                delay = RESTART_FIRST_S if ran >= HEALTHY_AFTER_S else min(
                    RESTART_MAX_S, self._backoff.get(name, RESTART_FIRST_S / 2) * 2)
                self._backoff[name] = delay
                self._due[name] = now + delay
                log.error("%s exited (code %s); starting it again in %.0f s. Its log: %s",
                          name, proc.returncode(), delay, proc.log_path)
                continue
            if now < due:
                continue
            del self._due[name]
            try:
                proc.start()
            except OSError as exc:
                log.error("could not start %s again: %s", name, exc)
                self._due[name] = now + self._backoff[name]
                continue
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self._started[name] = now
            self.state.pids[name] = proc.pid
            changed = True
            log.warning("%s started again (pid %d, restart %d)", name, proc.pid, self.restarts[name])
        if changed:
            self.state.write(self.data_dir)

    def shutdown(self) -> None:
        """Stop children in reverse order of start: simulator, API, gateways, processors, brokers, db."""
        for proc in reversed(self.procs):
            proc.stop(timeout_s=30)
        state_file = self.data_dir / "state.json"
        if state_file.exists():
            self.state.up_pid = 0
            self.state.write(self.data_dir)


def run_up(settings: Settings, *, simulate: bool,
           print_fn: Callable[[str], object] = print) -> int:
    """Start, report where everything listens, run until SIGINT/SIGTERM, stop cleanly."""
    sup = Supervisor(settings, simulate=simulate)
    signal.signal(signal.SIGTERM, sup.stop)
    signal.signal(signal.SIGINT, sup.stop)
    with ExitStack() as stack:
        stack.callback(sup.shutdown)
        started = time.monotonic()
        state = sup.start()
        print_fn(f"maillage is up ({time.monotonic() - started:.1f}s), data in {sup.data_dir}")
        print_fn(f"  API + web page : {state.api_url}  (OpenAPI: {state.api_url}/docs)")
        print_fn(f"  MQTT (devices) : {state.mqtt_host}:{state.mqtt_port}")
        print_fn(f"  Kafka          : {state.kafka_bootstrap} ({state.kafka_kind or 'external'})")
        print_fn(f"  PostgreSQL     : {state.database_url}")
        print_fn(f"  logs           : {Path(sup.data_dir) / 'logs'}")
        if simulate:
            print_fn("  simulator      : demo territory (tenant 'demo')")
        print_fn("Ctrl-C stops everything.")
        sup.watch()
    return 0
