"""The phases of one benchmark run, on its own embedded stack or on a running one.

1. set-up: the stack, the message mix, the bench devices, the latency probe;
2. baselines: raw MQTT (publishers -> Mosquitto -> one subscriber), raw Kafka (one aiokafka
   producer -> Tansu -> one consumer), raw COPY into `readings`;
3. throughput: the device sessions publish as fast as the pipeline stores (closed loop: what
   is published but not yet stored stays under `window` readings), for `duration_s`; figures
   over the part after the warm-up; CPU per component over the same part;
4. storage figure: envelopes produced straight to Kafka, drained by the storage processor alone,
   against the raw COPY;
5. latency: the sessions publish at half the maximum; the probe times publication -> row stored;
6. optionally the database is stopped (SIGSTOP) for a while under load, then resumed;
7. verification: everything drained, rows counted per device and metric against what was sent.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg

from maillage import topics
from maillage.bench import baselines
from maillage.bench.alert_probe import AlertProbe
from maillage.bench.falls import FallProbe
from maillage.bench.fleet import Archetype, build_mix, plan_connections, readings_per_message
from maillage.bench.probes import (
    Counters,
    LatencyProbe,
    ResourceSampler,
    Snapshot,
    component_of,
    percentiles,
    timeline,
)
from maillage.bench.publish import MAX, PublisherPool, Session, WorkerResult, WorkerSpec
from maillage.bench.report import Dashboard, machine_info
from maillage.config import Settings
from maillage.errors import MaillageError
from maillage.registry.models import DeviceSpec, DeviceType
from maillage.registry.tokens import create_token

log = logging.getLogger(__name__)

TENANT = "bench"
PROBE_READINGS = 4  # metrics per probe message
FEED_DEVICES = 16
COPY_DEVICES = 8
COPY_METRICS = ("energy_import_wh", "active_power_w", "apparent_power_va", "voltage_v", "current_a")


class BenchError(MaillageError):
    """The benchmark could not run."""


@dataclass
class BenchConfig:
    """What `maillage bench` was asked for."""

    duration_s: float = 300
    quick: bool = False
    gateways: int = 1
    storages: int = 1
    publishers: int = 2
    sessions: int = 24
    """Device sessions per publisher process."""
    rate: float | None = None
    """Messages/s of the throughput phase; None: as fast as the pipeline stores."""
    pause_db_s: float = 0
    data_dir: Path | None = None
    use_running: bool = False
    keep_data: bool = False
    profile_dir: Path | None = None
    window: int | None = None
    """Readings allowed between published and stored in the throughput phase (default by mode)."""

    @property
    def window_readings(self) -> int:
        return self.window or (30_000 if self.quick else 100_000)

    @property
    def baseline_s(self) -> float:
        return 2.0 if self.quick else 15.0

    @property
    def warmup_s(self) -> float:
        return min(3.0 if self.quick else 20.0, self.duration_s / 4)

    @property
    def latency_s(self) -> float:
        return 5.0 if self.quick else 60.0

    @property
    def storage_s(self) -> float:
        return 3.0 if self.quick else 15.0


@dataclass
class Phase:
    """Figures of a timed phase."""

    seconds: float = 0.0
    readings: float = 0.0
    stored: float = 0.0
    messages: float = 0.0
    published_readings: int = 0
    published_messages: int = 0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0


class Bench:
    """One run; `run()` returns the JSON document."""

    def __init__(self, config: BenchConfig, settings: Settings, ui: Dashboard) -> None:
        self.config = config
        self.settings = settings
        self.ui = ui
        self.run_id = time.strftime("r%m%d%H%M%S") + secrets.token_hex(2)
        self.failures: list[str] = []
        self.state: Any = None
        self.mix: list[Archetype] = []
        self.sessions: list[list[Session]] = []
        self.device_pks: dict[str, int] = {}
        self.pool: PublisherPool | None = None
        self.latency_phase = Phase()
        self.worker_results: list[WorkerResult] = []
        self.probe: LatencyProbe | None = None
        self.falls: FallProbe | None = None
        self.alerts: AlertProbe | None = None
        self.sampler: ResourceSampler | None = None
        self.counters: Counters | None = None
        self.feed_counts: Counter[tuple[str, str]] = Counter()
        self.feed_rows = 0
        self.raw_user = f"bench-raw-{self.run_id}"
        self.raw_password = secrets.token_urlsafe(18)
        self.t0 = int(time.time()) - 10 * 86400  # measurement times of the bench devices start here
        self.base: Snapshot | None = None
        self.lost_detail: list[str] = []
        self.dup_marks: list[tuple[str, float]] = []
        self.doc: dict[str, Any] = {}

    # --- set-up -------------------------------------------------------------------------------

    def _start_stack(self, stack: ExitStack) -> Any:
        from maillage.stack.process import free_port
        from maillage.stack.state import running_state
        from maillage.stack.supervisor import Supervisor

        if self.config.use_running:
            self.state = running_state(self.settings)
            return self.state
        if self.config.data_dir is not None:
            data_dir = self.config.data_dir
        else:
            data_dir = Path(tempfile.mkdtemp(prefix="maillage-bench-"))
            if not self.config.keep_data:
                stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        self.settings = self.settings.model_copy(update={
            "data_dir": data_dir, "gateway_processes": self.config.gateways,
            "storage_processes": self.config.storages, "api_port": free_port()})
        sup = Supervisor(self.settings)
        stack.callback(sup.shutdown)
        self.state = sup.start()
        return self.state

    def _coordinator_token(self) -> str:
        """A care coordinator's token of the bench tenant, for the alert stream."""
        with psycopg.connect(self._db(), autocommit=True) as conn:
            return create_token(conn, tenant=TENANT, role="care_coordinator",
                                label=f"bench {self.run_id} alert probe", ttl_days=1)

    def _db(self) -> str:
        return str(self.state.database_url)

    def _specs(self) -> tuple[list[DeviceSpec], list[DeviceSpec]]:
        """Device sessions and the probe (with MQTT access); feed and COPY devices (without)."""
        per_worker = plan_connections(self.mix, self.config.sessions)
        mqtt_specs: list[DeviceSpec] = []
        self.sessions = []
        for w in range(self.config.publishers):
            sessions = []
            for k, slot in enumerate(per_worker):
                a = self.mix[slot.archetype]
                did = f"{self.run_id}-w{w}-{k:02d}-{a.name}"
                mqtt_specs.append(DeviceSpec(device_id=did, type=DeviceType(a.device_type)))
                sessions.append(Session(f"{TENANT}/{did}", "", f"{topics.device_prefix(TENANT, did)}{a.channel}",
                                        slot.archetype, slot.weight))
            self.sessions.append(sessions)
        mqtt_specs.append(DeviceSpec(device_id=f"{self.run_id}-probe", type=DeviceType.METER))
        mqtt_specs.append(DeviceSpec(device_id=f"{self.run_id}-fall", type=DeviceType.CARE_BUTTON))
        silent = [DeviceSpec(device_id=f"{self.run_id}-feed-{k:02d}", type=DeviceType.METER)
                  for k in range(FEED_DEVICES)]
        silent += [DeviceSpec(device_id=f"{self.run_id}-copy-{k:02d}", type=DeviceType.METER)
                   for k in range(COPY_DEVICES)]
        return mqtt_specs, silent

    def _register(self) -> dict[str, str]:
        """Register the bench devices and the raw-MQTT account; returns passwords by username."""
        from maillage.registry.devices import register
        from maillage.registry.dynsec import DynsecClient
        from maillage.registry.tenants import add_tenant, tenant_exists
        from maillage.stack.state import mqtt_admin

        mqtt_specs, silent = self._specs()
        raw_role = f"bench-raw-{self.run_id}"
        raw_topic = f"bench/{self.run_id}/#"
        with psycopg.connect(self._db(), autocommit=True) as conn:
            if not tenant_exists(conn, TENANT):
                add_tenant(conn, tenant_id=TENANT, name="maillage bench")
            host, port, user, password = mqtt_admin(self.settings)
            with DynsecClient(host, port, user, password, timeout_s=120) as dyn:
                creds = register(conn, [(TENANT, s) for s in mqtt_specs], dynsec=dyn)
                dyn.run([
                    {"command": "createRole", "rolename": raw_role, "acls": [
                        {"acltype": a, "topic": raw_topic, "allow": True, "priority": 0}
                        for a in ("publishClientSend", "subscribePattern", "publishClientReceive")]},
                    {"command": "createClient", "username": self.raw_user, "password": self.raw_password,
                     "roles": [{"rolename": raw_role}]},
                ])
            register(conn, [(TENANT, s) for s in silent], dynsec=None)
            rows = conn.execute("SELECT device_id, pk FROM devices WHERE tenant_id = %s AND device_id LIKE %s",
                                (TENANT, f"{self.run_id}-%")).fetchall()
        self.device_pks = {r[0]: r[1] for r in rows}
        return {c.mqtt_username: c.mqtt_password for c in creds}

    def _unregister(self) -> None:
        """Remove the bench's broker accounts (rows stay: they are the measured data)."""
        from maillage.registry.devices import device_role
        from maillage.registry.dynsec import DynsecClient
        from maillage.stack.state import mqtt_admin

        users = [s.username for w in self.sessions for s in w] + [f"{TENANT}/{self.run_id}-probe",
                                                                  f"{TENANT}/{self.run_id}-fall"]
        commands: list[dict[str, Any]] = []
        for u in users:
            commands += [{"command": "deleteClient", "username": u},
                         {"command": "deleteRole", "rolename": device_role(u)}]
        commands += [{"command": "deleteClient", "username": self.raw_user},
                     {"command": "deleteRole", "rolename": f"bench-raw-{self.run_id}"}]
        try:
            host, port, user, password = mqtt_admin(self.settings)
            with DynsecClient(host, port, user, password, timeout_s=120) as dyn:
                dyn.run(commands, ignore=("not found",))
        except MaillageError as exc:
            log.warning("could not remove the bench's broker accounts: %s", exc)

    def _pids(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for name, pid in self.state.pids.items():
            out.setdefault(component_of(name), []).append(pid)
        if self.pool is not None:
            out["publishers"] = self.pool.pids
        return out

    # --- helpers ---------------------------------------------------------------------------------

    def _snap(self) -> Snapshot:
        if self.counters is not None:
            return self.counters.snapshot()
        with psycopg.connect(self._db(), autocommit=True) as conn:
            n = conn.execute("SELECT count(*) FROM readings WHERE device_pk = ANY(%s)",
                             (list(self.device_pks.values()),)).fetchone()
        return Snapshot(time.monotonic(), stored_readings=float(n[0]) if n else 0.0)

    def _handed(self) -> int:
        """Readings handed to the pipeline so far by the bench (sessions, probe, feed)."""
        pub = self.pool.control.total("readings") if self.pool is not None else 0
        probe = self.probe.published * PROBE_READINGS if self.probe is not None else 0
        return pub + probe + self.feed_rows

    def _backlog(self, snap: Snapshot) -> float:
        """Readings handed to the pipeline and not yet stored as new rows."""
        assert self.base is not None
        return self._handed() - (snap.stored_readings - self.base.stored_readings)

    def _check_pool(self) -> None:
        if self.pool is not None:
            errors = self.pool.failed_early()
            if errors:
                raise BenchError("publisher failed: " + "; ".join(errors[:3]))

    def _bench_rows(self) -> int:
        """Rows of `readings` of the bench devices of this run (COPY baseline devices apart)."""
        pks = [pk for d, pk in self.device_pks.items() if "-copy-" not in d]
        with psycopg.connect(self._db(), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM readings WHERE device_pk = ANY(%s)", (pks,)).fetchone()
        return int(row[0]) if row else 0

    def _drain(self, label: str, *, final: bool = False, timeout_s: float = 600) -> float:
        """Wait until every reading handed to the pipeline is stored; returns the seconds waited.

        The counters say when the storage processor wrote as many new rows as were handed in;
        the final drain then counts the rows in SQL until they are all there or stop coming.
        """
        stall_s = 10.0 if self.config.quick else 30.0
        started = time.monotonic()
        self.ui.phase(f"drain ({label})", None)
        last_progress, last_value = started, -1.0
        while True:
            snap = self._snap()
            backlog = self._backlog(snap)
            now = time.monotonic()
            self.ui.tick(None, f"backlog {backlog:,.0f} readings")
            if backlog <= 0:
                break
            if snap.processed_readings != last_value:
                last_value, last_progress = snap.processed_readings, now
            if now - last_progress > stall_s or now - started > timeout_s:
                break
            time.sleep(0.2)
        if final:
            handed, last_n = self._handed(), -1
            last_progress = time.monotonic()
            while True:
                n = self._bench_rows()
                self.ui.tick(None, f"{handed - n:,} readings not in the database yet")
                if n >= handed:
                    break
                if n != last_n:
                    last_n, last_progress = n, time.monotonic()
                if time.monotonic() - last_progress > stall_s:
                    break
                time.sleep(1.0)
        waited = time.monotonic() - started
        self.dup_marks.append((label, self._snap().duplicate_readings))
        self.ui.finish(f"drained in {waited:.1f} s")
        return waited

    # --- baselines -------------------------------------------------------------------------------

    def _timed_counter(self, name: str, seconds: float, read: Callable[[], float],
                       steer: Callable[[float], None] | None = None, unit: str = "msg/s") -> float:
        """Rate of a counter over `seconds` after a warm-up of a fifth of it."""
        warm = seconds / 5
        self.ui.phase(name, warm + seconds)
        started = time.monotonic()
        t0 = v0 = None
        while True:
            time.sleep(0.1)
            now, value = time.monotonic(), read()
            if steer is not None:
                steer(value)
            el = now - started
            if t0 is None and el >= warm:
                t0, v0 = now, value
            rate = (value - v0) / (now - t0) if t0 is not None and v0 is not None and now > t0 else 0.0
            self.ui.tick(el, f"{rate:,.0f} {unit}" if t0 is not None else "warming up")
            if el >= warm + seconds:
                break
        assert t0 is not None and v0 is not None
        rate = (read() - v0) / (time.monotonic() - t0)
        self.ui.finish(f"{rate:,.0f} {unit}")
        return rate

    def _mqtt_baseline(self) -> float:
        ctx = mp.get_context("spawn")
        received = ctx.Value("q", 0, lock=False)
        ready, stop = ctx.Event(), ctx.Event()
        host, port = self.state.mqtt_host, self.state.mqtt_port
        sub = ctx.Process(target=baselines.subscriber_main, daemon=True, args=(
            host, port, self.raw_user, self.raw_password, f"bench/{self.run_id}/raw/#", received, ready, stop))
        sub.start()
        specs = [WorkerSpec(w, host, port, [Session(self.raw_user, self.raw_password,
                                                    f"bench/{self.run_id}/raw/{w}/{k}", s.archetype, s.weight)
                                            for k, s in enumerate(sessions)],
                            self.mix, self.t0, raw=True, client_prefix=f"bench-raw-{self.run_id}")
                 for w, sessions in enumerate(self.sessions)]
        pool = PublisherPool(specs)
        try:
            if not ready.wait(20):
                raise BenchError("raw MQTT subscriber did not subscribe")
            pool.start()
            self._wait_ready(pool)
            window = 20_000
            pool.control.credit.value = window
            pool.set_rate(MAX)

            def steer(value: float) -> None:
                pool.control.credit.value = int(value) + window

            return self._timed_counter("baseline: raw MQTT", self.config.baseline_s,
                                       lambda: float(received.value), steer)
        finally:
            pool.stop(timeout_s=20)
            stop.set()
            sub.join(timeout=10)
            if sub.is_alive():
                sub.terminate()

    def _kafka_baseline(self) -> float:
        ctx = mp.get_context("spawn")
        topic = f"maillage.bench.raw.{self.run_id}"
        bootstrap = self.state.kafka_bootstrap
        asyncio.run(baselines.create_topic(bootstrap, topic, self.settings.topic_partitions(
            embedded=self.state.kafka_kind == "tansu")))
        ids = [s.username.split("/", 1)[1] for s in self.sessions[0]][:FEED_DEVICES]
        records, _ = baselines.envelope_records(self.mix, TENANT, ids, self.t0, 4096)
        produced, consumed = ctx.Value("q", 0, lock=False), ctx.Value("q", 0, lock=False)
        ready, stop = ctx.Event(), ctx.Event()
        cons = ctx.Process(target=baselines.consumer_main, daemon=True,
                           args=(bootstrap, topic, None, consumed, ready, stop))
        prod = ctx.Process(target=baselines.producer_main, daemon=True,
                           args=(bootstrap, topic, records, produced, consumed, 20_000, stop))
        cons.start()
        try:
            if not ready.wait(30):
                raise BenchError("raw Kafka consumer got no partitions")
            prod.start()
            deadline = time.monotonic() + 30
            while produced.value == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            return self._timed_counter("baseline: raw Kafka", self.config.baseline_s,
                                       lambda: float(consumed.value), unit="records/s")
        finally:
            stop.set()
            for p in (prod, cons):
                p.join(timeout=10)
                if p.is_alive():
                    p.terminate()
            asyncio.run(baselines.delete_topic(bootstrap, topic))

    def _copy_baseline(self) -> float:
        query = "SELECT name, id FROM metrics WHERE name = ANY(%s)"
        with psycopg.connect(self._db(), autocommit=True) as conn:
            mids: dict[str, int] = dict(conn.execute(query, (list(COPY_METRICS),)).fetchall())
            missing = [m for m in COPY_METRICS if m not in mids]
            if missing:
                conn.execute("INSERT INTO metrics (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
                             (missing,))
                mids = dict(conn.execute(query, (list(COPY_METRICS),)).fetchall())
        pks = [pk for d, pk in self.device_pks.items() if "-copy-" in d]
        self.ui.phase("baseline: raw COPY", self.config.baseline_s)
        started = time.monotonic()

        def progress(rows: int) -> None:
            el = time.monotonic() - started
            self.ui.tick(el, f"{rows / el:,.0f} rows/s")

        res = baselines.copy_baseline(self._db(), device_pks=pks, metric_ids=[mids[m] for m in COPY_METRICS],
                                      t0=self.t0, duration_s=self.config.baseline_s, progress=progress)
        self.ui.finish(f"{res.rows_per_s:,.0f} rows/s ({res.rows:,} rows)")
        return res.rows_per_s

    # --- pipeline phases ---------------------------------------------------------------------------

    def _wait_ready(self, pool: PublisherPool, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(pool.control.ready[:]):
            errors = pool.failed_early()
            if errors:
                raise BenchError("publisher sessions failed: " + "; ".join(errors[:3]))
            if time.monotonic() > deadline:
                raise BenchError("publisher sessions did not connect")
            time.sleep(0.05)

    def _publish_phase(self, name: str, seconds: float, *, rate: float, closed: bool,
                       warmup_s: float = 0.0, at: Callable[[float], None] | None = None) -> Phase:
        """Publish for `seconds`; figures over the part after `warmup_s`."""
        assert self.pool is not None and self.sampler is not None
        control = self.pool.control
        window = self.config.window_readings
        start_snap = self._snap()
        start_pub = control.total("readings")
        control.credit.value = start_pub + window if closed else -1
        self.pool.set_rate(rate)
        self.ui.phase(name, seconds)
        started = time.monotonic()
        w_snap: Snapshot | None = None
        w_cpu: dict[str, float] = {}
        w_pub = (0, 0)
        last_snap, last_t = start_snap, started
        shown = 0.0
        while True:
            time.sleep(0.2)
            now = time.monotonic()
            el = now - started
            snap = self._snap()
            if closed:
                control.credit.value = int(start_pub + snap.processed_readings
                                           - start_snap.processed_readings + window)
            if w_snap is None and el >= warmup_s:
                w_snap = snap
                w_cpu = {c: u.cpu_s for c, u in self.sampler.measure().items()}
                w_pub = (control.total("readings"), control.total("messages"))
            if at is not None:
                at(el)
            if now - last_t >= 1.0:
                shown = (snap.processed_readings - last_snap.processed_readings) / (now - last_t)
                last_snap, last_t = snap, now
            self._check_pool()
            self.ui.tick(el, f"stored {shown:,.0f} readings/s, backlog {self._backlog(snap):,.0f}")
            if el >= seconds:
                break
        end_snap = self._snap()
        end_cpu = {c: u.cpu_s for c, u in self.sampler.measure().items()}
        self.pool.set_rate(0)
        control.credit.value = -1
        assert w_snap is not None
        ph = Phase(seconds=end_snap.at - w_snap.at,
                   readings=end_snap.processed_readings - w_snap.processed_readings,
                   stored=end_snap.stored_readings - w_snap.stored_readings,
                   published_readings=control.total("readings") - w_pub[0],
                   published_messages=control.total("messages") - w_pub[1],
                   cpu={c: end_cpu[c] - w_cpu.get(c, 0.0) for c in end_cpu})
        rpm = ph.published_readings / ph.published_messages if ph.published_messages else 1.0
        ph.messages = ph.readings / rpm
        self.ui.finish(f"{ph.readings_per_s:,.0f} readings/s, {ph.messages / ph.seconds:,.0f} msg/s")
        return ph

    def _storage_figure(self, e2e_readings_per_s: float) -> dict[str, Any]:
        """Envelopes straight into Kafka; the storage processor alone drains them."""
        assert self.sampler is not None
        ctx = mp.get_context("spawn")
        rpm = readings_per_message([a for a in self.mix if a.readings_per_message > 0])
        rows_target = self.config.storage_s * max(3 * e2e_readings_per_s, 20_000)
        n = int(rows_target / rpm)
        ids = [d for d in self.device_pks if "-feed-" in d]
        produced = ctx.Value("q", 0, lock=False)
        ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
        feed = ctx.Process(target=baselines.storage_feed_main, daemon=True, args=(
            self.state.kafka_bootstrap, topics.READINGS, self.mix, TENANT, sorted(ids), self.t0, n,
            produced, ready, go, results))
        self.ui.phase("storage: preparing feed", None)
        feed.start()
        counts = baselines.drain_queue(results, 120)
        if counts is None or not ready.wait(30):
            raise BenchError("the storage feed could not prepare its records")
        self.feed_counts = Counter(counts)
        rows = sum(self.feed_counts.values())
        self.ui.finish(f"{n:,} envelopes, {rows:,} rows")
        snap0 = self._snap()
        cpu0 = {c: u.cpu_s for c, u in self.sampler.measure().items()}
        self.feed_rows += rows
        self.ui.phase("storage processor", None)
        go.set()
        t_go = time.monotonic()
        t_p = p_done = None
        last_progress, last_value = t_go, -1.0
        cpu_p: dict[str, float] = {}
        while True:
            time.sleep(0.1)
            snap = self._snap()
            now = time.monotonic()
            done = snap.processed_readings - snap0.processed_readings
            if t_p is None and produced.value >= n:
                t_p, p_done = now, done
                cpu_p = {c: u.cpu_s for c, u in self.sampler.measure().items()}
            self.ui.tick(None, f"{done:,.0f} / {rows:,} rows stored")
            if done >= rows:
                break
            if done != last_value:
                last_value, last_progress = done, now
            if now - last_progress > 30:
                self.failures.append("storage figure: the storage processor stopped storing")
                break
        t_end = time.monotonic()
        cpu_end = {c: u.cpu_s for c, u in self.sampler.measure().items()}
        feed.join(timeout=10)
        if t_p is None or p_done is None:
            t_p, p_done, cpu_p = t_end, done, cpu_end
        remaining = rows - p_done
        drain_only = remaining >= 0.25 * rows and t_end - t_p > 0.5
        if drain_only:
            rate, seconds, rows_m, cpu_a = remaining / (t_end - t_p), t_end - t_p, remaining, cpu_p
        else:
            rate, seconds, rows_m, cpu_a = rows / (t_end - t_go), t_end - t_go, rows, cpu0
        cost = {c: round((cpu_end[c] - cpu_a.get(c, 0.0)) / rows_m * 1e6, 1)
                for c in ("storage", "postgres") if c in cpu_end and rows_m}
        self.ui.finish(f"{rate:,.0f} rows/s" + ("" if drain_only else " (lower bound: the feed was slower)"))
        return {"rows_per_s": round(rate), "rows": rows, "records": n, "seconds": round(seconds, 2),
                "drain_only": drain_only, "cpu_s_per_million": cost}

    def _pause_db(self, rate: float) -> dict[str, Any]:
        """Publish at `rate`; stop PostgreSQL for `pause_db_s` in the middle; resume; catch up."""
        assert self.sampler is not None
        pid = self.state.pids.get("postgres")
        if pid is None:
            raise BenchError("--pause-db needs the embedded PostgreSQL (its PID is not in the state file)")
        pre, paused, post = (3.0, self.config.pause_db_s, 5.0) if self.config.quick else \
            (10.0, self.config.pause_db_s, 20.0)
        before = {c: u.mem_mb for c, u in self.sampler.measure().items()}
        self.sampler.reset_peaks()
        stopped: list[psutil.Process] = []
        resumed_at: list[float] = []

        def stop_db() -> None:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
            for p in procs:
                try:
                    p.send_signal(signal.SIGSTOP)
                    stopped.append(p)
                except psutil.NoSuchProcess:
                    pass

        def resume_db() -> None:
            for p in reversed(stopped):
                try:
                    p.send_signal(signal.SIGCONT)
                except psutil.NoSuchProcess:
                    pass
            stopped.clear()
            resumed_at.append(time.monotonic())

        def at(el: float) -> None:
            if not stopped and not resumed_at and el >= pre:
                stop_db()
                self.ui.note(f"PostgreSQL stopped (SIGSTOP) for {paused:.0f} s")
            elif stopped and el >= pre + paused:
                resume_db()
                self.ui.note("PostgreSQL resumed (SIGCONT)")

        try:
            if self.probe is not None:
                self.probe.phase = "pause"
            self._publish_phase(f"database paused {paused:.0f} s", pre + paused + post, rate=rate,
                                closed=False, at=at)
        finally:
            if stopped:
                resume_db()
            if self.probe is not None:
                self.probe.phase = None
        self._drain("after the pause")
        caught_up = time.monotonic() - resumed_at[0] if resumed_at else None
        peaks = self.sampler.reset_peaks()
        return {"paused_s": paused, "rate_msgs_per_s": round(rate), "catch_up_s": caught_up and round(caught_up, 1),
                "peak_mb": {c: round(v) for c, v in peaks.items()},
                "before_mb": {c: round(v) for c, v in before.items()}}

    # --- verification --------------------------------------------------------------------------------

    def _expected(self) -> tuple[Counter[tuple[str, str]], Counter[str], int, int]:
        """Rows expected per (device, metric), events per device, readings and messages published."""
        exp: Counter[tuple[str, str]] = Counter()
        events: Counter[str] = Counter()
        by_user = {s.username: s for w in self.sessions for s in w}
        messages = 0
        for r in self.worker_results:
            for user, per_template in r.sent.items():
                s = by_user[user]
                did = user.split("/", 1)[1]
                a = self.mix[s.archetype]
                for k, n in enumerate(per_template):
                    if not n:
                        continue
                    messages += n
                    t = a.templates[k]
                    for m in t.metrics:
                        exp[(did, m)] += n
                    if t.events:
                        events[did] += n * t.events
        if self.probe is not None:
            did = f"{self.run_id}-probe"
            for m in ("energy_import_wh", "active_power_w", "voltage_v", "current_a"):
                exp[(did, m)] += self.probe.acked
            messages += self.probe.acked
        return exp, events, sum(exp.values()), messages

    def _count_rows(self, device_ids: list[str]) -> tuple[Counter[tuple[str, str]], Counter[str]]:
        pks = [self.device_pks[d] for d in device_ids if d in self.device_pks]
        with psycopg.connect(self._db(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT d.device_id, m.name, count(*) FROM readings r JOIN devices d ON d.pk = r.device_pk "
                "JOIN metrics m ON m.id = r.metric_id WHERE r.device_pk = ANY(%s) GROUP BY 1, 2",
                (pks,)).fetchall()
            ev = conn.execute(
                "SELECT d.device_id, count(*) FROM events e JOIN devices d ON d.pk = e.device_pk "
                "WHERE e.device_pk = ANY(%s) GROUP BY 1", (pks,)).fetchall()
        return Counter({(r[0], r[1]): r[2] for r in rows}), Counter({r[0]: r[1] for r in ev})

    def _compare(self, exp: Counter[Any], got: Counter[Any]) -> tuple[int, int]:
        lost = sum(max(0, n - got.get(k, 0)) for k, n in exp.items())
        extra = sum(max(0, n - exp.get(k, 0)) for k, n in got.items())
        for k, n in exp.items():
            if n > got.get(k, 0) and len(self.lost_detail) < 20:
                self.lost_detail.append(f"{k}: expected {n}, stored {got.get(k, 0)}")
        return lost, extra

    def _verify(self) -> dict[str, Any]:
        self.ui.phase("verification", None)
        exp, exp_events, published, messages = self._expected()
        mqtt_devices = sorted({d for d, _ in exp} | set(exp_events))
        got, got_events = self._count_rows(mqtt_devices)
        lost, extra = self._compare(exp, got)
        ev_lost, ev_extra = self._compare(exp_events, got_events)
        feed_got, _ = self._count_rows(sorted({d for d, _ in self.feed_counts}))
        feed_lost, feed_extra = self._compare(self.feed_counts, feed_got)
        end = self._snap()
        assert self.base is not None
        dup = end.duplicate_readings - self.base.duplicate_readings
        rejected = end.rejected_messages - self.base.rejected_messages
        if lost:
            self.failures.append(f"{lost} readings published over MQTT were not stored")
        if ev_lost:
            self.failures.append(f"{ev_lost} events published over MQTT were not stored")
        if feed_lost:
            self.failures.append(f"{feed_lost} readings of the storage feed were not stored")
        if rejected:
            self.failures.append(f"the gateway rejected {rejected:.0f} bench messages (see maillage.dlq)")
        self.ui.finish(f"lost {lost}, unexpected {extra}, duplicates absorbed {dup:.0f}")
        return {"published": published, "stored": sum(min(n, got.get(k, 0)) for k, n in exp.items()),
                "lost": lost, "unexpected": extra, "duplicated": int(dup), "messages_published": messages,
                "events_published": sum(exp_events.values()), "events_lost": ev_lost, "events_unexpected": ev_extra,
                "rejected": int(rejected), "feed_lost": feed_lost, "feed_unexpected": feed_extra}

    # --- the run -----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.config
        with ExitStack() as stack:
            self.ui.phase("starting", None)
            mix_box: list[list[Archetype]] = []
            mixer = threading.Thread(target=lambda: mix_box.append(build_mix()), daemon=True)
            mixer.start()
            self._start_stack(stack)
            mixer.join()
            if not mix_box:
                raise BenchError("could not build the message mix from the territory simulator")
            self.mix = mix_box[0]
            self.counters = Counters(Path(self.settings.data_dir) / "prometheus")
            if not self.counters.available():
                log.warning("no Prometheus counters in %s: progress is counted in SQL (slower)",
                            self.counters.directory)
                self.counters = None
            passwords = self._register()
            if cfg.use_running:
                stack.callback(self._unregister)
            self.ui.finish(f"stack ready, {sum(len(s) for s in self.sessions)} device sessions, "
                           f"{len(self.mix)} archetypes")
            self.sampler = ResourceSampler(self._pids)
            self.sampler.start()
            stack.callback(self.sampler.stop)
            probe_user = f"{TENANT}/{self.run_id}-probe"
            self.probe = LatencyProbe(
                self.state.mqtt_host, self.state.mqtt_port, probe_user, passwords[probe_user],
                f"{topics.device_prefix(TENANT, self.run_id + '-probe')}up/json", self._db(),
                self.device_pks[f"{self.run_id}-probe"])
            self.probe.phase = "warm-up"
            self.probe.start()
            stack.callback(self.probe.stop)
            fall_user = f"{TENANT}/{self.run_id}-fall"
            self.falls = FallProbe(
                self.state.mqtt_host, self.state.mqtt_port, fall_user, passwords[fall_user],
                f"{topics.device_prefix(TENANT, self.run_id + '-fall')}up/event", self._db(),
                TENANT, f"{self.run_id}-fall")
            self.falls.start()
            stack.callback(self.falls.stop)
            self.alerts = AlertProbe(str(self.state.api_url), self._coordinator_token(),
                                     f"{self.run_id}-fall", self.falls.alert_sent, self.falls.lock)
            self.alerts.start()
            stack.callback(self.alerts.stop)
            self.base = self._snap()

            baseline = {"mqtt_msgs_per_s": round(self._mqtt_baseline()),
                        "kafka_records_per_s": round(self._kafka_baseline()),
                        "copy_rows_per_s": round(self._copy_baseline())}
            self.ui.phase("pipeline ready?", None)
            if not self.probe.wait_first(90):
                raise BenchError("no reading got through the pipeline in 90 s (see the logs in "
                                 f"{self.settings.data_dir}/logs)")
            self.probe.phase = None
            self.ui.finish("first reading stored")
            specs = [WorkerSpec(w, self.state.mqtt_host, self.state.mqtt_port,
                                [Session(s.username, passwords[s.username], s.topic, s.archetype, s.weight)
                                 for s in sessions], self.mix, self.t0, client_prefix=f"bench-{self.run_id}")
                     for w, sessions in enumerate(self.sessions)]
            self.pool = PublisherPool(specs)
            self.pool.start()
            stack.callback(self.pool.stop, 30)
            self._wait_ready(self.pool)
            self._drain("before the run", timeout_s=60)

            # throughput
            self.probe.phase = self.falls.phase = "max"
            recordings = self._start_profile()
            self.sampler.reset_peaks()
            mode = "max" if cfg.rate is None else "rate"
            thr = self._publish_phase("throughput" + ("" if cfg.rate is None else f" at {cfg.rate:,.0f} msg/s"),
                                      cfg.duration_s, rate=MAX if cfg.rate is None else cfg.rate,
                                      closed=cfg.rate is None, warmup_s=cfg.warmup_s)
            self.probe.phase = self.falls.phase = None
            peaks = self.sampler.peaks()
            profile = self._finish_profile(recordings)
            self._drain("throughput")
            max_msgs = thr.messages / thr.seconds if thr.seconds else 0.0

            storage = self._storage_figure(thr.readings_per_s)
            storage["copy_rows_per_s"] = baseline["copy_rows_per_s"]
            storage["ratio"] = round(storage["rows_per_s"] / baseline["copy_rows_per_s"], 3) \
                if baseline["copy_rows_per_s"] else None

            # latency at half the maximum
            half = max(1.0, max_msgs / 2)
            self.probe.phase = self.falls.phase = "latency"
            self.latency_phase = self._publish_phase("latency at 50 %", cfg.latency_s, rate=half, closed=False)
            self.probe.phase = self.falls.phase = None
            self._drain("latency")

            pause = self._pause_db(half) if cfg.pause_db_s > 0 else None
            for comp, v in self.sampler.peaks().items():
                peaks[comp] = max(peaks.get(comp, 0.0), v)

            self.worker_results = self.pool.stop(timeout_s=60)
            for r in self.worker_results:
                if r.errors:
                    self.failures.append(f"publisher {r.index}: " + "; ".join(r.errors[:3]))
            self.probe.stop()
            self.falls.stop()
            if self.alerts is not None:
                self.alerts.stop()
            self._drain("final", final=True)
            verification = self._verify()

        self.doc = self._document(baseline, thr, storage, pause, verification, peaks, profile, mode, half)
        return self.doc

    # --- profile -------------------------------------------------------------------------------------

    def _start_profile(self) -> list[Any]:
        from maillage.bench import profile

        if self.config.profile_dir is None:
            return []
        seconds = int(max(5, min(30, self.config.duration_s - self.config.warmup_s - 2)))
        out = []
        for name, pid in self.state.pids.items():
            if name.startswith(("gateway", "storage")):
                rec = profile.record(pid, name, self.config.profile_dir, seconds)
                if rec is not None:
                    out.append(rec)
        return out

    def _finish_profile(self, recordings: list[Any]) -> dict[str, Any] | None:
        from maillage.bench import profile

        if not recordings:
            return None
        out: dict[str, Any] = {}
        md = []
        for rec in recordings:
            rec.wait(60)
            if rec.raw.exists():
                s = profile.summarize(rec.raw)
                out[rec.name] = s
                md.append(profile.summary_markdown(rec.name, s))
        if self.config.profile_dir is not None and md:
            (self.config.profile_dir / "summary.md").write_text("\n".join(md))
        return out

    # --- document ------------------------------------------------------------------------------------

    def _document(self, baseline: dict[str, Any], thr: Phase, storage: dict[str, Any],
                  pause: dict[str, Any] | None, v: dict[str, Any], peaks: dict[str, float],
                  profile: dict[str, Any] | None, mode: str, half: float) -> dict[str, Any]:
        cfg = self.config
        assert self.probe is not None
        cost: dict[str, dict[str, Any]] = {}
        order = ["gateway", "storage", "mosquitto", "kafka", "postgres"]
        for comp in order + sorted(c for c in thr.cpu if c not in order):
            if comp not in thr.cpu:
                continue
            cost[comp] = {"cpu_s_per_million": round(thr.cpu[comp] / thr.readings * 1e6, 1) if thr.readings else None,
                          "peak_rss_mb": round(peaks.get(comp, 0.0)),
                          "cores": round(thr.cpu[comp] / thr.seconds, 2) if thr.seconds else None}
        lat = self.probe.latencies
        falls = self.falls.latencies if self.falls is not None else {}
        alert_lat = self.alerts.latencies if self.alerts is not None else {}
        dups: dict[str, int] = {}
        prev = self.base.duplicate_readings if self.base is not None else 0.0
        for label, value in self.dup_marks:
            dups[label] = dups.get(label, 0) + int(value - prev)
            prev = value
        return {
            "machine": machine_info(cfg.gateways if not cfg.use_running else
                                    sum(1 for n in self.state.pids if n.startswith("gateway")),
                                    cfg.storages if not cfg.use_running else
                                    sum(1 for n in self.state.pids if n.startswith("storage"))),
            "config": {"duration_s": cfg.duration_s, "quick": cfg.quick, "publishers": cfg.publishers,
                       "sessions": sum(len(s) for s in self.sessions), "mode": mode, "rate": cfg.rate,
                       "window_readings": cfg.window_readings, "warmup_s": cfg.warmup_s,
                       "use_running": cfg.use_running, "profiled": profile is not None,
                       "readings_per_message": round(readings_per_message(self.mix), 2),
                       "mix": {a.name: round(a.share, 4) for a in self.mix}, "run_id": self.run_id,
                       "kafka": {"kind": self.state.kafka_kind or "external",
                                 "start_s": self.state.kafka_start_s}},
            "baselines": baseline,
            "e2e": {"readings_per_s": round(thr.readings_per_s),
                    "messages_per_s": round(thr.messages / thr.seconds) if thr.seconds else 0,
                    "duration_s": cfg.duration_s, "window_s": round(thr.seconds, 1),
                    "published": v["published"], "stored": v["stored"], "lost": v["lost"],
                    "duplicated": v["duplicated"], "unexpected": v["unexpected"],
                    "messages_published": v["messages_published"],
                    "events_published": v["events_published"], "events_lost": v["events_lost"],
                    "rejected": v["rejected"], "lost_detail": self.lost_detail,
                    "duplicates_by_phase": dups},
            "storage": {**storage, "lost": v["feed_lost"]},
            "latency_ms": {"stored": percentiles(lat.get("latency", [])),
                           "anomaly": percentiles(falls.get("latency", [])),
                           "alert": percentiles(alert_lat.get("latency", []))},
            "latency_detail": {"rate_msgs_per_s": round(half), "samples": len(lat.get("latency", [])),
                               "stored_at_max": percentiles(lat.get("max", [])),
                               "stored_during_pause": percentiles(lat.get("pause", [])),
                               "method": "probe device, 50 msg/s; row polled every 20 ms (upper bound)",
                               "timeline": timeline(self.probe.sent_at.get("latency", []),
                                                    lat.get("latency", [])),
                               "probe_errors": self.probe.errors[:5],
                               "anomaly_samples": len(falls.get("latency", [])),
                               "anomaly_at_max": percentiles(falls.get("max", [])),
                               "anomaly_method": "a care pendant publishes 2 falls/s; its anomaly "
                                                 "row polled every 20 ms (upper bound)",
                               "anomaly_errors": (self.falls.errors[:5] if self.falls else []),
                               "alert_samples": len(alert_lat.get("latency", [])),
                               "alert_at_max": percentiles(alert_lat.get("max", [])),
                               "alert_method": "a care coordinator's SSE stream (GET "
                                               "/v1/alerts/stream) receives each fall's alert, "
                                               "then resolves it through the API",
                               "alert_errors": (self.alerts.errors[:5] if self.alerts else []),
                               "cores": {c: round(v / self.latency_phase.seconds, 2)
                                         for c, v in self.latency_phase.cpu.items()}
                               if self.latency_phase.seconds else {}},
            "cost": cost,
            "pause_db": pause,
            "profile": profile,
            "ok": not self.failures,
            "failures": self.failures,
        }


def default_docs_path() -> Path:
    """docs/benchmarks.md of the source tree this package runs from, else of the working directory."""
    here = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    return here if here.parent.is_dir() else Path(os.getcwd()) / "docs" / "benchmarks.md"
