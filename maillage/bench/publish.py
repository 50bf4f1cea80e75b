"""Publisher processes: a pool of real device sessions publishing QoS 1 as fast as allowed.

Each process drives its MQTT sessions from one selector loop with paho's external-loop API
(`publish` writes to the socket at once, `loop_read` takes the PUBACKs), so a process sends
tens of thousands of messages per second without a thread per session.

The main process steers every publisher through shared memory (`Control`):
- `rate[i]`: messages per second for process `i`; `0` pauses it; `MAX` publishes as fast as the
  in-flight window and the credit allow;
- `credit`: the total (over every process) of readings (or messages, for the raw MQTT baseline)
  that may have been published so far, or `-1` for no limit. The main process moves it forward
  as rows get stored, which bounds every queue of the pipeline: "max" is then the rate the
  pipeline sustains, not the rate the broker can queue.
At `stop`, a process waits for its last PUBACKs and reports what each session sent, per template,
so that the expected rows are known exactly.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import random
import selectors
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from typing import Any

import paho.mqtt.client as mqtt

from maillage.bench.fleet import Archetype, stamp

log = logging.getLogger(__name__)

MAX = -1.0
WINDOW = 200
"""Unacknowledged QoS 1 messages per session (Mosquitto allows 1000)."""
BURST = 256


@dataclass(frozen=True)
class Session:
    """One device session: its credentials, its topic, what it sends."""

    username: str
    password: str
    topic: str
    archetype: int
    weight: float


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a publisher process needs (picklable)."""

    index: int
    host: str
    port: int
    sessions: list[Session]
    mix: list[Archetype]
    t0: int
    """Measurement time of each session's first message (epoch s); message i is at t0 + i."""
    raw: bool = False
    """Raw baseline: send fixed payloads of the mix to a plain topic, count messages as credit."""
    client_prefix: str = "bench"


@dataclass
class Control:
    """Shared memory between the main process and the publishers."""

    rate: SynchronizedArray[float]
    credit: Synchronized[int]
    messages: SynchronizedArray[int]
    readings: SynchronizedArray[int]
    acked: SynchronizedArray[int]
    ready: SynchronizedArray[int]
    stop: Any  # mp.Event
    results: Any  # mp.Queue

    @classmethod
    def create(cls, ctx: Any, n: int) -> Control:
        return cls(rate=ctx.Array("d", n, lock=False), credit=ctx.Value("q", -1, lock=False),
                   messages=ctx.Array("q", n, lock=False), readings=ctx.Array("q", n, lock=False),
                   acked=ctx.Array("q", n, lock=False), ready=ctx.Array("b", n, lock=False),
                   stop=ctx.Event(), results=ctx.Queue())

    def total(self, name: str) -> int:
        return int(sum(getattr(self, name)[:]))


@dataclass
class _Conn:
    session: Session
    client: mqtt.Client
    sent: int = 0
    acked: int = 0
    connected: bool = False
    failed: str | None = None
    per_template: list[int] = field(default_factory=list)


@dataclass
class WorkerResult:
    """What one publisher process sent, per session and template."""

    index: int
    sent: dict[str, list[int]]
    """username -> messages sent per template index of its archetype."""
    messages: int
    acked: int
    errors: list[str]


def _client(spec: WorkerSpec, s: Session, n: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{spec.client_prefix}-{spec.index}-{n}",
                    protocol=mqtt.MQTTv311, clean_session=True)
    c.username_pw_set(s.username, s.password)
    c.max_inflight_messages_set(WINDOW + 10)
    c.max_queued_messages_set(0)
    return c


def worker_main(spec: WorkerSpec, control: Control) -> None:
    """Entry point of a publisher process."""
    i = spec.index
    conns: list[_Conn] = []
    sel = selectors.DefaultSelector()
    for n, s in enumerate(spec.sessions):
        conn = _Conn(s, _client(spec, s, n),
                     per_template=[0] * len(spec.mix[s.archetype].templates))

        def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any,
                       conn: _Conn = conn) -> None:
            if rc.is_failure:
                conn.failed = f"{conn.session.username}: connection refused ({rc})"
            conn.connected = not rc.is_failure

        def on_publish(client: Any, userdata: Any, mid: int, rc: Any, props: Any,
                       conn: _Conn = conn) -> None:
            conn.acked += 1

        def on_disconnect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any,
                          conn: _Conn = conn) -> None:
            conn.connected = False
            if rc.is_failure:
                conn.failed = conn.failed or f"{conn.session.username}: disconnected ({rc})"

        conn.client.on_connect = on_connect
        conn.client.on_publish = on_publish
        conn.client.on_disconnect = on_disconnect
        try:
            conn.client.connect(spec.host, spec.port, keepalive=60)
        except OSError as exc:
            control.results.put(WorkerResult(i, {}, 0, 0, [f"{s.username}: cannot connect ({exc})"]))
            return
        sock = conn.client.socket()
        assert sock is not None
        sel.register(sock, selectors.EVENT_READ, conn)
        conns.append(conn)
    deadline = time.monotonic() + 30
    while not all(c.connected or c.failed for c in conns) and time.monotonic() < deadline:
        for key, _ in sel.select(0.05):
            key.data.client.loop_read()
    errors = [c.failed for c in conns if c.failed]
    if errors or not all(c.connected for c in conns):
        control.results.put(WorkerResult(i, {}, 0, 0, errors or ["sessions did not connect"]))
        return
    control.ready[i] = 1
    try:
        _publish_loop(spec, control, conns, sel)
    finally:
        for c in conns:
            c.client.disconnect()
    control.results.put(WorkerResult(
        i, {c.session.username: c.per_template for c in conns},
        sum(c.sent for c in conns), sum(c.acked for c in conns),
        [c.failed for c in conns if c.failed]))


def _publish_loop(spec: WorkerSpec, control: Control, conns: list[_Conn],
                  sel: selectors.BaseSelector) -> None:
    i = spec.index
    rng = random.Random(1000 + i)
    schedule = rng.choices(range(len(conns)), [c.session.weight for c in conns], k=16384)
    pos = 0
    mix = spec.mix
    raw_payloads = [stamp(t, spec.t0, 1) for a in mix for t in a.templates] if spec.raw else []
    rate_seen, rate_t0, rate_n0 = 0.0, time.monotonic(), 0
    sent = readings = 0
    last_misc = time.monotonic()
    while True:
        stopping = control.stop.is_set()
        now = time.monotonic()
        rate = control.rate[i]
        if rate != rate_seen:
            rate_seen, rate_t0, rate_n0 = rate, now, sent
        if stopping or rate == 0:
            budget = 0
        elif rate < 0:
            budget = BURST
        else:
            owed = int((now - rate_t0) * rate) - (sent - rate_n0)
            if owed > rate:  # more than a second behind (starved): drop the debt, keep the pace
                rate_t0, rate_n0, owed = now, sent, 0
            budget = min(BURST, owed)
        room = 1 << 62
        credit = control.credit.value
        if budget > 0 and credit >= 0:
            room = credit - (control.total("messages") if spec.raw else control.total("readings"))
            if room <= 0:
                budget = 0
        tries = 0
        sent_before = sent
        while budget > 0 and room > 0 and tries < BURST * 4:
            tries += 1
            c = conns[schedule[pos]]
            pos = (pos + 1) & 16383
            if c.sent - c.acked >= WINDOW or not c.connected:
                continue
            a = mix[c.session.archetype]
            k = c.sent % len(a.templates)
            t = a.templates[k]
            if spec.raw:
                payload = raw_payloads[(sent + k) % len(raw_payloads)]
            else:
                payload = stamp(t, spec.t0 + c.sent, c.sent + 1)
            info = c.client.publish(c.session.topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                c.failed = c.failed or f"{c.session.username}: publish failed ({info.rc})"
                c.connected = False
                continue
            c.sent += 1
            c.per_template[k] += 1
            sent += 1
            n = len(t.metrics)
            readings += n
            budget -= 1
            room -= 1 if spec.raw else n
        control.messages[i] = sent
        control.readings[i] = readings
        control.acked[i] = sum(c.acked for c in conns)
        for c in conns:
            if c.client.want_write():
                c.client.loop_write()
        busy = sent > sent_before
        for key, _ in sel.select(0 if busy else 0.001):
            key.data.client.loop_read()
        if now - last_misc > 1.0:
            last_misc = now
            for c in conns:
                c.client.loop_misc()
        if stopping and all(c.acked >= c.sent or not c.connected for c in conns):
            control.acked[i] = sum(c.acked for c in conns)
            return


class PublisherPool:
    """Start, steer and stop publisher processes."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        self.ctx = mp.get_context("spawn")
        self.specs = specs
        self.control = Control.create(self.ctx, len(specs))
        self.procs: list[Any] = []
        self.results: list[WorkerResult] = []

    def start(self) -> None:
        for spec in self.specs:
            p = self.ctx.Process(target=worker_main, args=(spec, self.control), daemon=True,
                                 name=f"bench-publisher-{spec.index}")
            p.start()
            self.procs.append(p)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def set_rate(self, total: float) -> None:
        """Messages per second over every process; MAX for as fast as allowed; 0 pauses."""
        n = len(self.specs)
        for i in range(n):
            self.control.rate[i] = total if total < 0 else total / n

    def stop(self, timeout_s: float = 60) -> list[WorkerResult]:
        """Stop publishing, wait for the last PUBACKs, collect what each process sent."""
        self.control.stop.set()
        deadline = time.monotonic() + timeout_s
        while len(self.results) < len(self.procs) and time.monotonic() < deadline:
            try:
                self.results.append(self.control.results.get(timeout=0.5))
            except queue.Empty:
                if not any(p.is_alive() for p in self.procs) and self.control.results.empty():
                    break
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        return self.results

    def failed_early(self) -> list[str]:
        """Errors of processes that gave up before being stopped (e.g. refused sessions)."""
        out: list[str] = []
        while True:
            try:
                r = self.control.results.get_nowait()
            except queue.Empty:
                break
            self.results.append(r)
            out += r.errors
        return out
