"""Publisher processes: a pool of real device sessions publishing QoS 1 as fast as allowed.

Each process drives its MQTT v5 sessions (`device.BenchDevice` on `maillage.mqtt`) from one
asyncio loop: a burst renders and encodes up to `BURST` messages over the sessions, then writes
each session's PUBLISH packets in one `write()`; PUBACKs are counted per socket chunk. A session
keeps at most `WINDOW` messages unacknowledged (never more than the broker's receive maximum).

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

import asyncio
import logging
import multiprocessing as mp
import queue
import random
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from typing import Any

from maillage.bench.device import BenchDevice
from maillage.bench.fleet import Archetype, stamp

log = logging.getLogger(__name__)

MAX = -1.0
WINDOW = 500
"""Unacknowledged QoS 1 messages per session (capped by the broker's receive maximum)."""
BURST = 512
"""Messages rendered between two turns of the event loop."""
PACE_S = 0.005
"""Shortest sleep when paced by a rate: bursts of rate x PACE_S messages."""
IDLE_S = 0.05
"""Sleep while paused or waiting for credit (the main process moves it every 0.1-0.2 s)."""


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
class WorkerResult:
    """What one publisher process sent, per session and template."""

    index: int
    sent: dict[str, list[int]]
    """username -> messages sent (and not refused) per template index of its archetype."""
    messages: int
    acked: int
    errors: list[str]


def worker_main(spec: WorkerSpec, control: Control) -> None:
    """Entry point of a publisher process."""
    asyncio.run(_worker(spec, control))


async def _worker(spec: WorkerSpec, control: Control) -> None:
    i = spec.index
    devices = [BenchDevice(s.username, s.topic, len(spec.mix[s.archetype].templates))
               for s in spec.sessions]
    outcome = await asyncio.gather(
        *(d.connect(spec.host, spec.port, f"{spec.client_prefix}-{i}-{n}", s.password, WINDOW)
          for n, (d, s) in enumerate(zip(devices, spec.sessions, strict=True))),
        return_exceptions=True)
    errors = [f"{s.username}: cannot connect ({r})" for s, r in zip(spec.sessions, outcome, strict=True)
              if isinstance(r, BaseException)]
    if errors:
        await asyncio.gather(*(d.close() for d in devices), return_exceptions=True)
        control.results.put(WorkerResult(i, {}, 0, 0, errors))
        return
    control.ready[i] = 1
    try:
        await Publisher(spec, control, devices).run()
    finally:
        await asyncio.gather(*(d.close() for d in devices), return_exceptions=True)
    control.results.put(WorkerResult(
        i, {d.username: d.per_template for d in devices}, sum(d.sent for d in devices),
        sum(d.acked - d.refused for d in devices), [d.failed for d in devices if d.failed]))


class Publisher:
    """The publishing loop of one process: rate, credit, bursts, PUBACK windows."""

    def __init__(self, spec: WorkerSpec, control: Control, devices: list[BenchDevice]) -> None:
        self.spec = spec
        self.control = control
        self.devices = devices
        rng = random.Random(1000 + spec.index)
        self.schedule = rng.choices(range(len(devices)), [s.weight for s in spec.sessions], k=16384)
        self.templates = [spec.mix[s.archetype].templates for s in spec.sessions]
        self.raw_payloads = ([stamp(t, spec.t0, 1) for a in spec.mix for t in a.templates]
                             if spec.raw else [])
        self.pos = 0
        self.sent = 0
        self.readings = 0

    async def run(self) -> None:
        """Publish until `stop`, then wait for the last PUBACKs."""
        control, i = self.control, self.spec.index
        rate_seen, rate_t0, rate_n0 = 0.0, time.monotonic(), 0
        last_check = time.monotonic()
        while True:
            stopping = control.stop.is_set()
            now = time.monotonic()
            rate = control.rate[i]
            if rate != rate_seen:
                rate_seen, rate_t0, rate_n0 = rate, now, self.sent
            if stopping or rate == 0:
                budget = 0
            elif rate < 0:
                budget = BURST
            else:
                owed = int((now - rate_t0) * rate) - (self.sent - rate_n0)
                if owed > rate:  # more than a second behind (starved): drop the debt, keep the pace
                    rate_t0, rate_n0, owed = now, self.sent, 0
                budget = min(BURST, owed)
            room = 1 << 62
            credit = control.credit.value
            if budget > 0 and credit >= 0:
                room = credit - control.total("messages" if self.spec.raw else "readings")
            sent = self._burst(budget, room) if budget > 0 and room > 0 else 0
            control.messages[i] = self.sent
            control.readings[i] = self.readings
            control.acked[i] = sum(d.acked - d.refused for d in self.devices)
            if now - last_check > 1.0:
                last_check = now
                self._check_connections()
            if stopping and all(d.settled for d in self.devices):
                return
            if sent:
                await asyncio.sleep(0)  # let the loop write and read the PUBACKs
            elif stopping or budget <= 0 and rate >= 0:
                await asyncio.sleep(IDLE_S if stopping or rate == 0 else PACE_S)
            elif room <= 0:
                await asyncio.sleep(IDLE_S)
            else:
                await asyncio.sleep(0.005)  # every window full: PUBACKs are on their way

    def _burst(self, budget: int, room: int) -> int:
        """Render and encode up to `budget` messages (and `room` credit); write them; the count."""
        devices, schedule, templates = self.devices, self.schedule, self.templates
        raw, raw_payloads, t0 = self.spec.raw, self.raw_payloads, self.spec.t0
        touched: set[BenchDevice] = set()
        pos, sent, readings = self.pos, 0, 0
        tries = 0
        while sent < budget and room > 0 and tries < BURST * 4:
            tries += 1
            n = schedule[pos]
            pos = (pos + 1) & 16383
            d = devices[n]
            if not d.can_send:
                continue
            ts = templates[n]
            k = d.sent % len(ts)
            t = ts[k]
            if raw:
                payload = raw_payloads[(self.sent + sent + k) % len(raw_payloads)]
            else:
                payload = stamp(t, t0 + d.sent, d.sent + 1)
            d.queue(payload, k)
            touched.add(d)
            sent += 1
            r = len(t.metrics)
            readings += r
            room -= 1 if raw else r
        for d in touched:
            d.flush()
        self.pos = pos
        self.sent += sent
        self.readings += readings
        return sent

    def _check_connections(self) -> None:
        for d in self.devices:
            if d.failed is None and not d.open:
                d.failed = f"{d.username}: connection lost"


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
