"""The maintenance processor: keeps rollups fresh, partitions ahead, and applies retention.

Rollups are recomputed from the `rollup_dirty` queue that the storage writer fills in the same
transaction as the readings (late or duplicate data re-queues exactly the affected buckets).
Several maintenance processes may run: the refresher shards its work under try-locks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import psycopg

from maillage.db import rollups
from maillage.db.partitions import ensure_partitions
from maillage.db.retention import apply_retention

log = logging.getLogger(__name__)

ROLLUP_EVERY_S = 5.0
ROLLUP_DUTY = 3.0  # the next refresh waits this many times as long as the last one took…
ROLLUP_MAX_WAIT_S = 60.0  # …but never longer: queries redo the work of a longer wait themselves
PARTITIONS_EVERY_S = 3600.0
RETENTION_EVERY_S = 6 * 3600.0


class Maintenance:
    """Runs each periodic job when it is due; one database connection."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._due = {"rollups": 0.0, "partitions": 0.0, "retention": time.monotonic() + 60}

    def tick(self, conn: psycopg.Connection) -> None:
        """Run what is due now."""
        now = time.monotonic()
        if now >= self._due["partitions"]:
            created = ensure_partitions(conn, datetime.now(UTC))
            if created:
                log.info("created %d partitions", created)
            self._due["partitions"] = now + PARTITIONS_EVERY_S
        if now >= self._due["rollups"]:
            # Another pass only while a pass was full (a backlog): a queue refilled by live
            # traffic during a pass waits for the next tick, or the live buckets would be
            # recomputed back to back, each time for a handful of new readings.
            start = time.monotonic()
            while rollups.refresh_rollups(conn) and rollups.saturated:
                pass
            took = time.monotonic() - start
            wait = min(ROLLUP_MAX_WAIT_S, max(ROLLUP_EVERY_S, ROLLUP_DUTY * took))
            self._due["rollups"] = time.monotonic() + wait
        if now >= self._due["retention"]:
            apply_retention(conn, datetime.now(UTC))
            self._due["retention"] = now + RETENTION_EVERY_S

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop`; database errors are logged and retried (the queue keeps the work)."""
        conn: psycopg.Connection | None = None
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await asyncio.to_thread(_connect, self.database_url)
                await asyncio.to_thread(self.tick, conn)
            except psycopg.Error as exc:
                log.warning("maintenance pass failed, retrying: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                pass
        if conn is not None:
            conn.close()


def _connect(url: str) -> psycopg.Connection:
    """An autocommit connection (the refresh runs its own transactions; VACUUM needs none)."""
    return psycopg.connect(url, autocommit=True)
