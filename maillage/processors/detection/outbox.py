"""The relay from `anomaly_outbox` to `maillage.anomalies`: in commit order, each transition once.

It runs as a task of the detection process. Woken by the NOTIFY each commit of transitions sends
(and every `poll_s` anyway), it produces the pending rows in `seq` order, keyed
`{tenant}/{device_id}` so that one device's transitions stay in order on one partition, waits
for Kafka's acknowledgements, then marks the rows produced with their partition and offset.

A crash between the acknowledgement and the mark would produce those rows again after a
restart; so, on start, the relay reads each partition of the topic from the last offset it
recorded to the end and marks as produced every event id already there. Only one relay works at
a time (a PostgreSQL advisory lock); others wait for it to go.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from maillage import topics
from maillage.db import detection as db
from maillage.processors.kafka_topics import partitions_of

log = logging.getLogger(__name__)

LOCK_KEY = 0x6D61_696C_6F75_7462  # "mailoutb": one relay per database
"""The advisory lock held by the working relay."""
PRUNE_EVERY_S = 3600.0
"""Produced outbox rows older than a week are deleted this often."""


class Relay:
    """Produces the outbox to `topic` (see the module docstring)."""

    def __init__(self, database_url: str, bootstrap: str, *, topic: str = topics.ANOMALIES,
                 batch: int = 500, poll_s: float = 1.0) -> None:
        self.url, self.bootstrap, self.topic = database_url, bootstrap, topic
        self.batch, self.poll_s = batch, poll_s
        self._conn: psycopg.Connection | None = None
        self.produced = 0
        self.reconciled = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set."""
        conn: psycopg.Connection = await asyncio.to_thread(
            lambda: psycopg.connect(self.url, autocommit=True))
        self._conn = conn
        try:
            while not stop.is_set():
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
                if row and row[0]:
                    break
                await _wait(stop, 5.0)
            if stop.is_set():
                return
            conn.execute(f"LISTEN {db.OUTBOX_CHANNEL}")
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
            await producer.start()
            try:
                self.reconciled = await self.reconcile()
                if self.reconciled:
                    log.info("relay: %d transitions were already on %s (marked, not produced "
                             "again)", self.reconciled, self.topic)
                pruned_at = 0.0
                while not stop.is_set():
                    if await self.drain(producer) == 0:
                        await asyncio.to_thread(self._wait_notify)
                    if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                        pruned_at = time.monotonic()
                        await asyncio.to_thread(db.prune_outbox, conn=conn)
            finally:
                await producer.stop()
        finally:
            conn.close()
            log.info("relay stopped after producing %d transitions", self.produced)

    def _wait_notify(self) -> None:
        assert self._conn is not None
        for _ in self._conn.notifies(timeout=self.poll_s, stop_after=1):
            pass

    async def drain(self, producer: AIOKafkaProducer) -> int:
        """Produce one batch of pending rows and mark them; returns how many."""
        assert self._conn is not None
        rows = await asyncio.to_thread(db.pending_outbox, conn=self._conn, limit=self.batch)
        if not rows:
            return 0
        futures = [await producer.send(self.topic, key=key.encode(), value=value)
                   for _, _, key, value in rows]
        metas = await asyncio.gather(*futures)
        produced = [(r[1], m.partition, m.offset) for r, m in zip(rows, metas, strict=True)]
        await asyncio.to_thread(db.mark_produced, conn=self._conn, produced=produced)
        self.produced += len(rows)
        return len(rows)

    async def reconcile(self) -> int:
        """Mark as produced the outbox rows already on the topic after the last recorded offsets."""
        assert self._conn is not None
        last = await asyncio.to_thread(db.last_produced_offsets, conn=self._conn)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        found: list[tuple[str, int, int]] = []
        try:
            tps = [TopicPartition(self.topic, p) for p in await partitions_of(self.bootstrap, self.topic)]
            if not tps:
                return 0
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            todo = {}
            for tp in tps:
                start = last.get(tp.partition, -1) + 1
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    todo[tp] = ends[tp]
            consumer.pause(*[tp for tp in tps if tp not in todo])
            while todo:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    for rec in records:
                        try:
                            found.append((orjson.loads(rec.value or b"")["event_id"], tp.partition,
                                          rec.offset))
                        except (orjson.JSONDecodeError, KeyError, TypeError):
                            log.warning("relay: %s[%d]@%d is not a transition", tp.topic,
                                        tp.partition, rec.offset)
                for tp in list(todo):
                    if await consumer.position(tp) >= todo[tp]:
                        del todo[tp]
                        consumer.pause(tp)
        finally:
            await consumer.stop()
        if not found:
            return 0
        return await asyncio.to_thread(db.mark_produced, conn=self._conn, produced=found)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
