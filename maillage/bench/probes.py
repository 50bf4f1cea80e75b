"""Instruments of a run: the pipeline's own counters, CPU and memory per component, latency."""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import orjson
import paho.mqtt.client as mqtt
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)


# --- counters --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters of every maillage process (Prometheus multiprocess files)."""

    at: float
    stored_readings: float = 0.0
    duplicate_readings: float = 0.0
    stored_events: float = 0.0
    accepted_messages: float = 0.0
    rejected_messages: float = 0.0
    dlq: float = 0.0

    @property
    def processed_readings(self) -> float:
        """Reading rows the storage processor is done with (written or found already there)."""
        return self.stored_readings + self.duplicate_readings


class Counters:
    """Reads the counters the gateway and the storage processor write to `<data dir>/prometheus`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def available(self) -> bool:
        return self.directory.is_dir()

    def snapshot(self) -> Snapshot:
        from prometheus_client.multiprocess import MultiProcessCollector

        values: dict[str, float] = {}
        try:
            metrics = list(MultiProcessCollector(None, path=str(self.directory)).collect())  # type: ignore[no-untyped-call]  # untyped upstream
        except (OSError, ValueError) as exc:  # a file being created right now
            log.debug("counters not readable: %s", exc)
            metrics = []
        for metric in metrics:
            for s in metric.samples:
                if not s.name.endswith("_total"):
                    continue
                if s.name == "maillage_stored_rows_total":
                    values[f"stored_{s.labels.get('table')}"] = s.value
                elif s.name == "maillage_duplicate_rows_total":
                    values[f"duplicate_{s.labels.get('table')}"] = s.value
                elif s.name == "maillage_ingest_messages_total":
                    key = f"{s.labels.get('outcome')}_messages"
                    values[key] = values.get(key, 0.0) + s.value
                elif s.name == "maillage_dlq_records_total":
                    values["dlq"] = values.get("dlq", 0.0) + s.value
        return Snapshot(time.monotonic(), values.get("stored_readings", 0.0),
                        values.get("duplicate_readings", 0.0), values.get("stored_events", 0.0),
                        values.get("accepted_messages", 0.0), values.get("rejected_messages", 0.0),
                        values.get("dlq", 0.0))


# --- CPU and memory per component ------------------------------------------------------------------

def component_of(name: str) -> str:
    """`gateway-1` -> `gateway`: processes of a kind are summed."""
    return name.split("-")[0] if name.split("-")[-1].isdigit() else name


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    # children_*: CPU of children already reaped (PostgreSQL backends that ended).
    return float(t.user + t.system + t.children_user + t.children_system)


@dataclass
class Usage:
    cpu_s: float = 0.0
    mem_mb: float = 0.0


class ResourceSampler(threading.Thread):
    """Samples CPU time and memory (PSS, so shared buffers count once) of each component.

    Cheap enough not to compete with what it measures (it did: 0.1-0.2 of a core): a component's
    child processes are listed again every `CHILDREN_S`, memory is read every `memory_every`
    samples (PSS parses /proc/<pid>/smaps_rollup), CPU times at every sample."""

    CHILDREN_S = 2.0

    def __init__(self, pids: Callable[[], dict[str, list[int]]], interval_s: float = 0.5,
                 memory_every: int = 4) -> None:
        super().__init__(name="bench-resources", daemon=True)
        self.pids = pids
        self.interval_s = interval_s
        self.memory_every = memory_every
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._measure_lock = threading.Lock()
        self.peak_mb: dict[str, float] = {}
        self.last: dict[str, Usage] = {}
        self._members: dict[int, tuple[float, list[psutil.Process]]] = {}

    def _members_of(self, pid: int) -> list[psutil.Process]:
        """The process and its descendants (listed again every `CHILDREN_S`)."""
        now = time.monotonic()
        cached = self._members.get(pid)
        if cached is None or now - cached[0] >= self.CHILDREN_S:
            root = cached[1][0] if cached is not None else psutil.Process(pid)
            cached = self._members[pid] = (now, [root, *root.children(recursive=True)])
        return cached[1]

    def measure(self, *, memory: bool = False) -> dict[str, Usage]:
        """CPU seconds so far (children included) per component; memory now if asked."""
        with self._measure_lock:  # the sampling thread and the phases both call this
            return self._measure(memory)

    def _measure(self, memory: bool) -> dict[str, Usage]:
        out: dict[str, Usage] = {}
        for comp, pids in self.pids().items():
            u = Usage()
            for pid in pids:
                try:
                    members = self._members_of(pid)
                except psutil.NoSuchProcess:
                    continue
                for i, p in enumerate(members):
                    try:
                        with p.oneshot():
                            if i == 0:
                                u.cpu_s += _cpu_s(p)
                            else:
                                t = p.cpu_times()
                                u.cpu_s += t.user + t.system
                            if not memory:
                                continue
                            try:
                                u.mem_mb += p.memory_full_info().pss / 1e6
                            except (psutil.AccessDenied, AttributeError):
                                u.mem_mb += p.memory_info().rss / 1e6
                    except (psutil.NoSuchProcess, psutil.ZombieProcess):
                        continue
            out[comp] = u
        return out

    def run(self) -> None:
        n = 0
        while not self._halt.is_set():
            with_memory = n % self.memory_every == 0
            n += 1
            try:
                now = self.measure(memory=with_memory)
            except Exception:  # noqa: BLE001 - a sampling hiccup must not end the run
                log.debug("resource sampling failed", exc_info=True)
                now = {}
            if with_memory:
                with self._lock:
                    self.last = now
                    for comp, u in now.items():
                        self.peak_mb[comp] = max(self.peak_mb.get(comp, 0.0), u.mem_mb)
            self._halt.wait(self.interval_s)

    def reset_peaks(self) -> dict[str, float]:
        """Start a new peak window; returns the peaks of the one that ends."""
        with self._lock:
            old, self.peak_mb = self.peak_mb, {c: u.mem_mb for c, u in self.last.items()}
        return old

    def peaks(self) -> dict[str, float]:
        with self._lock:
            return dict(self.peak_mb)

    def stop(self) -> None:
        self._halt.set()


# --- latency: publication to row stored ------------------------------------------------------------

@dataclass
class MqttProbe(ABC):
    """What the probes share: a dedicated device's own MQTT connection (`<username>-<name>`), a
    publisher thread and a poller thread (`bench-<name>-pub`, `bench-<name>-poll`), started
    together and stopped together (`_halt`, once the subclass has let the last ones arrive)."""

    name: ClassVar[str]
    """The probe's name in its MQTT client id and its threads' names."""

    host: str
    port: int
    username: str
    password: str
    topic: str
    database_url: str

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"{self.username}-{self.name}",
                                   protocol=mqtt.MQTTv311, clean_session=True)
        self._client.username_pw_set(self.username, self.password)
        self._threads: list[threading.Thread] = []

    @abstractmethod
    def _publish_loop(self) -> None:
        """Publish while a phase is set, until `_stop`."""

    @abstractmethod
    def _poll_loop(self) -> None:
        """Time the rows that appear, until `_stop`."""

    def _more_threads(self) -> list[threading.Thread]:
        """Threads a probe runs beside its publisher and its poller."""
        return []

    def start(self) -> None:
        self._client.connect(self.host, self.port, keepalive=60)
        self._client.loop_start()
        self._threads = [
            threading.Thread(target=self._publish_loop, name=f"bench-{self.name}-pub", daemon=True),
            threading.Thread(target=self._poll_loop, name=f"bench-{self.name}-poll", daemon=True),
            *self._more_threads()]
        for t in self._threads:
            t.start()

    def _halt(self) -> None:
        """Stop the threads, then the MQTT connection."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()


PROBE_METRIC = "active_power_w"


@dataclass
class LatencyProbe(MqttProbe):
    """A dedicated device publishing small JSON readings; a poller times when each row appears.

    Publication time is taken just before `publish()`; the poller queries the device's newest
    rows every `poll_s` and stamps each new `seq` with the time the query returned, so a latency
    is an upper bound, late by at most one poll interval plus one query.
    """

    name: ClassVar[str] = "probe"

    device_pk: int
    hz: float = 50.0
    poll_s: float = 0.02
    phase: str | None = None
    sent: dict[int, tuple[float, str]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    sent_at: dict[str, list[float]] = field(default_factory=dict)
    """Publication time (epoch s) of each latency sample, in the same order."""
    published: int = 0
    acked: int = 0
    seen: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._client.on_publish = self._on_publish

    def _on_publish(self, *args: object) -> None:
        self.acked += 1

    def wait_first(self, timeout_s: float) -> bool:
        """True once a first probe reading got stored (the pipeline is serving)."""
        return self._first.wait(timeout_s)

    def _publish_loop(self) -> None:
        seq = 0
        period = 1.0 / self.hz
        nxt = time.monotonic()
        energy = 12_000_000.0
        last_ms = 0
        while not self._stop.is_set():
            phase = self.phase
            if phase is not None:
                seq += 1
                energy += 1.0
                t = time.time()
                # Catching up after a stall may send two within a millisecond: keep times distinct.
                last_ms = max(int(t * 1000), last_ms + 1)
                payload = orjson.dumps({"ts": last_ms, "seq": seq, "values": {
                    "energy_import_wh": energy, PROBE_METRIC: 512.0 + seq % 97,
                    "voltage_v": 230.0 + seq % 7, "current_a": 2.5}})
                with self._lock:
                    self.sent[seq] = (t, phase)
                info = self._client.publish(self.topic, payload, qos=1)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self.published += 1
                else:
                    self.errors.append(f"probe publish failed: {info.rc}")
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                nxt = time.monotonic()

    def _poll_loop(self) -> None:
        last = datetime.now(UTC).replace(year=2000)
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True)
                rows = conn.execute(
                    "SELECT r.seq, r.ts FROM readings r JOIN metrics m ON m.id = r.metric_id "
                    "WHERE r.device_pk = %s AND m.name = %s AND r.ts > %s ORDER BY r.ts",
                    (self.device_pk, PROBE_METRIC, last)).fetchall()
                seen_at = time.time()
            except psycopg.Error as exc:
                self.errors.append(f"probe poll: {exc}")
                if conn is not None:
                    conn.close()
                self._stop.wait(0.5)
                continue
            if rows:
                last = rows[-1][1]
                with self._lock:
                    for seq, _ts in rows:
                        sent = self.sent.pop(seq, None)
                        if sent is None:
                            continue
                        self.seen += 1
                        self.latencies.setdefault(sent[1], []).append((seen_at - sent[0]) * 1000)
                        self.sent_at.setdefault(sent[1], []).append(sent[0])
                if not self._first.is_set():
                    self._first.set()
                    if self.phase == "warm-up":
                        self.phase = None
            self._stop.wait(self.poll_s)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self.phase = None
        deadline = time.monotonic() + 10
        while self.acked < self.published and time.monotonic() < deadline:
            time.sleep(0.05)
        self._halt()


def timeline(sent_at: list[float], latencies: list[float], step_s: float = 1.0) -> list[list[float]]:
    """Per `step_s` of publication time: [seconds from the first sample, samples, worst ms].

    Shows whether a tail comes from a few stalls (and how far apart) or from the whole phase.
    """
    if not sent_at:
        return []
    t0 = min(sent_at)
    slots: dict[int, list[float]] = {}
    for t, ms in zip(sent_at, latencies, strict=True):
        slot = slots.setdefault(int((t - t0) // step_s), [0, 0.0])
        slot[0] += 1
        slot[1] = max(slot[1], ms)
    return [[round(k * step_s, 1), n, round(worst, 1)] for k, (n, worst) in sorted(slots.items())]


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95, p99 (nearest rank), rounded to 0.1 ms; None without samples."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    s = sorted(values)

    def rank(q: float) -> float:
        return round(s[max(0, math.ceil(q * len(s)) - 1)], 1)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}
