"""The machine baselines of a run, timed: raw MQTT, raw Kafka, raw COPY (their workers: `baselines`)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable

import psycopg

from maillage.bench import baselines, queries
from maillage.bench.config import COPY_METRICS, FEED_DEVICES, TENANT, BenchError
from maillage.bench.fleet import Archetype
from maillage.bench.phases import wait_ready
from maillage.bench.publish import MAX, PublisherPool, Session, WorkerSpec
from maillage.bench.report import Dashboard


def timed_counter(name: str, seconds: float, read: Callable[[], float], *, ui: Dashboard,
                  steer: Callable[[float], None] | None = None, unit: str = "msg/s") -> float:
    """Rate of a counter over `seconds` after a warm-up of a fifth of it."""
    warm = seconds / 5
    ui.phase(name, warm + seconds)
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
        ui.tick(el, f"{rate:,.0f} {unit}" if t0 is not None else "warming up")
        if el >= warm + seconds:
            break
    assert t0 is not None and v0 is not None
    rate = (read() - v0) / (time.monotonic() - t0)
    ui.finish(f"{rate:,.0f} {unit}")
    return rate


def mqtt_baseline(*, host: str, port: int, raw_user: str, raw_password: str, run_id: str,
                  sessions: list[list[Session]], mix: list[Archetype], t0: int, seconds: float,
                  ui: Dashboard) -> float:
    """Publishers -> Mosquitto -> one subscriber, on the bench's raw topics: messages/s."""
    ctx = mp.get_context("spawn")
    received = ctx.Value("q", 0, lock=False)
    ready, stop = ctx.Event(), ctx.Event()
    sub = ctx.Process(target=baselines.subscriber_main, daemon=True, args=(
        host, port, raw_user, raw_password, f"bench/{run_id}/raw/#", received, ready, stop))
    sub.start()
    specs = [WorkerSpec(w, host, port, [Session(raw_user, raw_password,
                                                f"bench/{run_id}/raw/{w}/{k}", s.archetype, s.weight)
                                        for k, s in enumerate(worker)],
                        mix, t0, raw=True, client_prefix=f"bench-raw-{run_id}")
             for w, worker in enumerate(sessions)]
    pool = PublisherPool(specs)
    try:
        if not ready.wait(20):
            raise BenchError("raw MQTT subscriber did not subscribe")
        pool.start()
        wait_ready(pool)
        window = 20_000
        pool.control.credit.value = window
        pool.set_rate(MAX)

        def steer(value: float) -> None:
            pool.control.credit.value = int(value) + window

        return timed_counter("baseline: raw MQTT", seconds, lambda: float(received.value),
                             ui=ui, steer=steer)
    finally:
        pool.stop(timeout_s=20)
        stop.set()
        sub.join(timeout=10)
        if sub.is_alive():
            sub.terminate()


def kafka_baseline(*, bootstrap: str, partitions: int, run_id: str, sessions: list[list[Session]],
                   mix: list[Archetype], t0: int, seconds: float, ui: Dashboard) -> float:
    """One aiokafka producer -> Kafka -> one consumer, on a topic of its own: records/s."""
    ctx = mp.get_context("spawn")
    topic = f"maillage.bench.raw.{run_id}"
    asyncio.run(baselines.create_topic(bootstrap, topic, partitions))
    ids = [s.username.split("/", 1)[1] for s in sessions[0]][:FEED_DEVICES]
    records, _ = baselines.envelope_records(mix, TENANT, ids, t0, 4096)
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
        return timed_counter("baseline: raw Kafka", seconds, lambda: float(consumed.value),
                             ui=ui, unit="records/s")
    finally:
        stop.set()
        for p in (prod, cons):
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        asyncio.run(baselines.delete_topic(bootstrap, topic))


def copy_baseline(*, db_url: str, device_pks: dict[str, int], t0: int, seconds: float,
                  ui: Dashboard) -> float:
    """COPY straight into `readings` for the COPY devices: rows/s."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        mids = queries.metric_ids(conn=conn, names=list(COPY_METRICS))
        missing = [m for m in COPY_METRICS if m not in mids]
        if missing:
            queries.add_metrics(conn=conn, names=missing)
            mids = queries.metric_ids(conn=conn, names=list(COPY_METRICS))
    pks = [pk for d, pk in device_pks.items() if "-copy-" in d]
    ui.phase("baseline: raw COPY", seconds)
    started = time.monotonic()

    def progress(rows: int) -> None:
        el = time.monotonic() - started
        ui.tick(el, f"{rows / el:,.0f} rows/s")

    res = baselines.copy_baseline(db_url, device_pks=pks, metric_ids=[mids[m] for m in COPY_METRICS],
                                  t0=t0, duration_s=seconds, progress=progress)
    ui.finish(f"{res.rows_per_s:,.0f} rows/s ({res.rows:,} rows)")
    return res.rows_per_s
