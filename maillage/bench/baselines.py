"""What the machine does without maillage's code in the way: raw MQTT, raw Kafka, raw COPY.

Also the direct Kafka producer of the storage figure, which feeds the storage processor
envelopes without going through MQTT and the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from maillage.bench.fleet import Archetype, stamp
from maillage.ingest.formats import MessageContext, parse_message

log = logging.getLogger(__name__)


# --- raw MQTT: the subscriber side (publishers are `publish.worker_main` in raw mode) -----------

def subscriber_main(host: str, port: int, username: str, password: str, topic: str,
                    received: Any, ready: Any, stop: Any) -> None:
    """Count QoS 1 messages on `topic` into the shared `received` value until `stop`.

    The same MQTT client as the publishers (`maillage.mqtt`, MQTT v5): each socket chunk is decoded
    at once and its PUBACKs go out in one write, so the figure is the broker's, not the client's.
    """
    asyncio.run(_subscribe(host, port, username, password, topic, received, ready, stop))


async def _subscribe(host: str, port: int, username: str, password: str, topic: str,
                     received: Any, ready: Any, stop: Any) -> None:
    from maillage.mqtt import MqttConnection

    count = 0
    conn: MqttConnection | None = None

    def on_publish(packets: list[Any]) -> None:
        nonlocal count
        count += len(packets)
        received.value = count
        assert conn is not None
        conn.ack([p.packet_id for p in packets if p.packet_id is not None])

    conn, _ = await MqttConnection.connect(host, port, f"bench-raw-sub-{int(time.time())}",
                                           username=username, password=password, keep_alive=60,
                                           on_publish=on_publish)
    await conn.subscribe([(topic, 1)])
    ready.set()
    while not stop.is_set() and conn.is_open:
        await asyncio.sleep(0.05)
    await conn.disconnect()


# --- raw Kafka: aiokafka producer and consumer in two processes ----------------------------------

def envelope_records(mix: list[Archetype], tenant: str, device_ids: list[str], t0: int, n: int,
                     seed: int = 3) -> tuple[list[tuple[bytes, bytes]], Counter[tuple[str, str]]]:
    """`n` Kafka records of reading envelopes as the gateway makes them, with their row counts.

    Record j belongs to device `j % len(device_ids)` and is measured at `t0 + j // len(device_ids)`
    seconds, so that every (device, metric, time) is new.
    """
    now_us = int(time.time() * 1_000_000)
    templates: list[dict[str, Any]] = []
    weights: list[float] = []
    for a in mix:
        readings = [t for t in a.templates if t.metrics]
        for t in readings:
            ctx = MessageContext(tenant, device_ids[0], a.channel, datetime.now(UTC), a.device_type)
            for env in parse_message(stamp(t, t0, 1), ctx):
                if env.kind == "reading":
                    templates.append(orjson.loads(env.to_kafka()))
                    weights.append(a.share / len(readings))
    rng = random.Random(seed)
    picks = rng.choices(range(len(templates)), weights, k=min(n, 65536))
    counts: Counter[tuple[str, str]] = Counter()
    out: list[tuple[bytes, bytes]] = []
    keys = [f"{tenant}/{d}".encode() for d in device_ids]
    nd = len(device_ids)
    for j in range(n):
        d = dict(templates[picks[j % len(picks)]])
        dev = j % nd
        d["device_id"] = device_ids[dev]
        d["ts"] = (t0 + j // nd) * 1_000_000
        d["rx"] = now_us
        d["seq"] = j // nd
        for metric in d["values"]:
            counts[(device_ids[dev], metric)] += 1
        out.append((keys[dev], orjson.dumps(d)))
    return out, counts


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], produced: Any,
                   consumed: Any | None, window: int, stop: Any, once: bool) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=512 * 1024, request_timeout_ms=30_000)
    await producer.start()
    failures: list[BaseException] = []

    def check(fut: asyncio.Future[Any]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:
            failures.append(exc)

    try:
        n = 0
        pending: list[asyncio.Future[Any]] = []
        while not stop.is_set() and not failures:
            if once and n >= len(records):
                break
            if consumed is not None and n - consumed.value > window:
                await asyncio.sleep(0.001)
                produced.value = n
                continue
            key, value = records[n % len(records)]
            fut = await producer.send(topic, value=value, key=key)
            fut.add_done_callback(check)
            pending.append(fut)
            n += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
                produced.value = n
        await asyncio.gather(*pending)
        produced.value = n
    finally:
        await producer.stop()
    if failures:
        raise failures[0]


def producer_main(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], produced: Any,
                  consumed: Any | None, window: int, stop: Any, once: bool = False) -> None:
    """Produce `records` (cycling unless `once`), at most `window` ahead of `consumed`."""
    asyncio.run(_produce(bootstrap, topic, records, produced, consumed, window, stop, once))


def storage_feed_main(bootstrap: str, topic: str, mix: list[Archetype], tenant: str,
                      device_ids: list[str], t0: int, n: int, produced: Any, ready: Any, go: Any,
                      results: Any) -> None:
    """The storage figure's feed: make `n` envelopes, wait for `go`, produce them all once."""
    records, counts = envelope_records(mix, tenant, device_ids, t0, n)
    results.put(dict(counts))
    ready.set()
    go.wait()
    asyncio.run(_produce(bootstrap, topic, records, produced, None, 0, _Never(), once=True))


class _Never:
    def is_set(self) -> bool:
        return False


async def _consume(bootstrap: str, topic: str, group: str, consumed: Any, ready: Any,
                   stop: Any) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_poll_records=10_000, fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=16 * 1024 * 1024,
                                session_timeout_ms=6_000, heartbeat_interval_ms=1_000)
    await consumer.start()
    n = 0
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            if not ready.is_set() and consumer.assignment():
                ready.set()
            n += sum(len(v) for v in batch.values())
            consumed.value = n
    finally:
        await consumer.stop()


def consumer_main(bootstrap: str, topic: str, group: str, consumed: Any, ready: Any,
                  stop: Any) -> None:
    """Count records of `topic` into the shared `consumed` value until `stop`."""
    asyncio.run(_consume(bootstrap, topic, group, consumed, ready, stop))


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create a topic if missing."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            try:
                await admin.create_topics([NewTopic(topic, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def delete_topic(bootstrap: str, topic: str) -> None:
    """Delete a topic, quietly (the broker may not support it)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    except Exception as exc:  # noqa: BLE001 - a leftover topic only costs broker memory
        log.info("could not delete %s: %s", topic, exc)
    finally:
        await admin.close()


# --- raw COPY ------------------------------------------------------------------------------------

@dataclass
class CopyResult:
    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def copy_baseline(database_url: str, *, device_pks: list[int], metric_ids: list[int], t0: int,
                  duration_s: float, batch_rows: int = 20_000,
                  progress: Any = None) -> CopyResult:
    """COPY rows straight into `readings` from one client, `batch_rows` per transaction.

    Rows are text lines made with a cheap formatter (no per-value adaptation), so the figure is
    what PostgreSQL takes, with the same primary key and partitions the storage processor meets.
    """
    nm = len(metric_ids)
    nd = len(device_pks)
    per_batch = max(1, batch_rows // (nm * nd))
    rx = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00").encode()
    rows = 0
    step = 0
    with psycopg.connect(database_url) as conn:
        started = time.monotonic()
        while time.monotonic() - started < duration_s:
            lines: list[bytes] = []
            for k in range(per_batch):
                second = t0 + step + k
                ts = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(second)).encode()
                for pk in device_pks:
                    for j, mid in enumerate(metric_ids):
                        lines.append(b"%d\t%d\t%s\t%d.5\t%s\t%d\n" % (pk, mid, ts, second % 9973 + j, rx,
                                                                        step + k))
            step += per_batch
            with conn.transaction(), conn.cursor().copy(
                "COPY readings (device_pk, metric_id, ts, value, received_at, seq) FROM STDIN"
            ) as copy:
                copy.write(b"".join(lines))
            rows += len(lines)
            if progress is not None:
                progress(rows)
        elapsed = time.monotonic() - started
    return CopyResult(rows, elapsed)


def drain_queue(q: Any, timeout_s: float) -> Any:
    """One item of a multiprocessing queue, or None after `timeout_s`."""
    try:
        return q.get(timeout=timeout_s)
    except queue.Empty:
        return None
