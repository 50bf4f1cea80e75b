"""The outbox relay: `command_targets` not yet produced -> `maillage.commands`, keyed `{tenant}/{device}`.

Woken by the NOTIFY of each new command (and every `poll_s` anyway). A crash between Kafka's
acknowledgement and the mark produces those targets again: the dispatcher records each target
once (by id), so a duplicate record changes nothing.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from aiokafka import AIOKafkaProducer

from maillage import topics
from maillage.db import commands as db
from maillage.processors.commands.metrics import PRODUCED

log = logging.getLogger(__name__)


class Relay:
    """Produces the command outbox to Kafka until stopped."""

    def __init__(self, database_url: str, bootstrap: str, *, batch: int = 500,
                 poll_s: float = 1.0) -> None:
        self.url, self.bootstrap, self.batch, self.poll_s = database_url, bootstrap, batch, poll_s
        self.produced = 0

    async def run(self, stop: asyncio.Event) -> None:
        conn: psycopg.Connection = await asyncio.to_thread(
            lambda: psycopg.connect(self.url, autocommit=True))
        try:
            db.listen(conn=conn)
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
            await producer.start()
            try:
                while not stop.is_set():
                    if await self.drain(conn, producer) == 0:
                        await asyncio.to_thread(_wait_notify, conn, self.poll_s)
            finally:
                await producer.stop()
        finally:
            conn.close()
            log.info("command relay stopped after %d targets", self.produced)

    async def drain(self, conn: psycopg.Connection, producer: AIOKafkaProducer) -> int:
        """Produce one batch of the outbox and mark it; how many."""
        rows = await asyncio.to_thread(db.pending_outbox, conn=conn, limit=self.batch)
        if not rows:
            return 0
        futures = [await producer.send(topics.COMMANDS, key=key, value=value)
                   for _, key, value in rows]
        await asyncio.gather(*futures)
        await asyncio.to_thread(db.mark_produced, conn=conn, ids=[r[0] for r in rows])
        self.produced += len(rows)
        PRODUCED.inc(len(rows))
        return len(rows)


def _wait_notify(conn: psycopg.Connection, timeout: float) -> None:
    for _ in conn.notifies(timeout=timeout, stop_after=1):
        pass
