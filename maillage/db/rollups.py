"""Rollups at 15 min, hour, day and month, per device and per area, kept right under late data.

Writers queue the 15-minute buckets they touch in `rollup_dirty`, in their own transaction.
`refresh_rollups` claims queued buckets, widens them for cumulative indexes (a new reading moves
the interpolated boundaries up to its neighbouring readings), recomputes those 15-minute buckets
from raw data, then the hours, days and months holding the buckets that changed, then queues and
recomputes the site / district / commune buckets. Every step is a recomputation, never an
increment, so running it twice, or after duplicates, gives the same rows. See docs/storage.md.

This module holds the queue and the refresh passes; the device stage is `rollup_devices`, the
area stage `rollup_areas`, their SQL `db/sql/*.sql`, the grains `grains`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import datetime

import psycopg
from psycopg import sql

from maillage.db.grains import GRAINS, LEVELS, Bucket, Level, table
from maillage.db.rollup_areas import area_stage
from maillage.db.rollup_devices import device_stage

__all__ = ["AREA_LIMIT", "DEFAULT_LIMIT", "GRAINS", "LEVELS", "SHARDS", "Bucket", "Level",
           "mark_dirty", "pending", "queue_from", "queued", "refresh_area", "refresh_devices",
           "refresh_rollups", "table"]

SHARDS = 4  # devices are split by pk % SHARDS so that two workers can refresh at once
LOCK_CLASS = 0x6D61  # advisory lock keys: (LOCK_CLASS, shard) per shard, (LOCK_CLASS + 1, 0) for areas
AREA_LOCK = (LOCK_CLASS + 1, 0)
DEFAULT_LIMIT = 100_000  # device queue entries (device, metric, bucket) per shard and pass
AREA_LIMIT = 100_000  # area queue rows (one per area bucket) per pass
VACUUM_EVERY_S = 10.0

def queue_from(select: str) -> str:
    """SQL queueing the rows of `select` (columns device_pk, metric_id, bucket): a row per shard."""
    return (
        "INSERT INTO rollup_dirty (shard, device_pks, metric_ids, buckets) "
        f"SELECT mod(device_pk, {SHARDS}), array_agg(device_pk), array_agg(metric_id), "
        "       array_agg(floor(extract(epoch FROM bucket) / 900)::integer) "
        f"FROM ({select}) k GROUP BY 1"
    )


def mark_dirty(conn: psycopg.Connection, *, staging_table: str) -> int:
    """Queue the buckets of every row of a staging table (device_pk, metric_id, ts); one INSERT.

    Returns how many distinct (device, metric, bucket) were queued.
    """
    select = sql.SQL("SELECT DISTINCT device_pk, metric_id, maillage_bucket15(ts) AS bucket "
                     "FROM {}").format(sql.Identifier(staging_table)).as_string(conn)
    query = queue_from(select) + " RETURNING cardinality(device_pks)"
    return sum(r[0] for r in conn.execute(query).fetchall())


def queued(conn: psycopg.Connection, device_pk: int) -> set[tuple[int, datetime]]:
    """(metric_id, bucket) queued for one device (for tests and diagnostics)."""
    rows = conn.execute(
        "SELECT u.metric_id, timestamptz 'epoch' + u.n * interval '15 minutes' FROM rollup_dirty q "
        "CROSS JOIN LATERAL unnest(q.device_pks, q.metric_ids, q.buckets) AS u(device_pk, metric_id, n) "
        "WHERE q.shard = %s AND u.device_pk = %s", (device_pk % SHARDS, device_pk)).fetchall()
    return {(int(m), b) for m, b in rows}


def pending(conn: psycopg.Connection) -> tuple[int, int]:
    """Entries waiting in the device queue, rows in the area queue."""
    row = conn.execute(
        "SELECT (SELECT coalesce(sum(cardinality(device_pks)), 0) FROM rollup_dirty), "
        "(SELECT count(*) FROM rollup_area_dirty)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def refresh_rollups(conn: psycopg.Connection, *, limit: int = DEFAULT_LIMIT,
                    area_limit: int = AREA_LIMIT) -> int:
    """One pass of the background refresher; returns the queue rows consumed (0: all fresh).

    Each shard of devices is refreshed in its own transaction under a try-lock, so a second
    worker takes the other shards or does nothing; areas follow under their own lock.
    """
    global saturated
    done, full = 0, False
    shards = list(range(SHARDS))
    start = random.randrange(SHARDS)  # two workers starting together take different shards
    for shard in shards[start:] + shards[:start]:
        with conn.transaction():
            _require_read_committed(conn)
            if _try_lock(conn, (LOCK_CLASS, shard)):
                n, rows = device_stage(conn, shards=[shard], limit=limit, pks=None)
                done += n
                full = full or rows >= limit
    with conn.transaction():
        _require_read_committed(conn)
        if _try_lock(conn, AREA_LOCK):
            n = area_stage(conn, limit=area_limit, area=None)
            done += n
            full = full or n >= area_limit
    saturated = full
    if done and conn.autocommit:
        _vacuum_queues(conn)
    return done


saturated = False
"""True when the last `refresh_rollups` pass stopped at its limit somewhere (a backlog is left)."""


_last_vacuum = 0.0


def _vacuum_queues(conn: psycopg.Connection) -> None:
    # Claims scan the queue heap; the dead rows they leave behind would slow every later claim
    # long before autovacuum's next round at 50,000 readings/s. VACUUM needs autocommit.
    global _last_vacuum
    if time.monotonic() - _last_vacuum >= VACUUM_EVERY_S:
        conn.execute("VACUUM (SKIP_LOCKED) rollup_dirty, rollup_area_dirty")
        _last_vacuum = time.monotonic()


def refresh_devices(conn: psycopg.Connection, device_pks: Sequence[int]) -> int:
    """Bring these devices' rollups up to date now, waiting for a refresher busy with them.

    Their queued buckets are recomputed but stay queued: a queue row holds a whole batch of
    devices, and the background refresher, which deletes it, recomputes them once more (same
    rows). Returns the buckets recomputed.
    """
    pks = sorted(set(device_pks))
    if not pks:
        return 0
    shards = sorted({pk % SHARDS for pk in pks})
    with conn.transaction():
        _require_read_committed(conn)
        for shard in shards:  # always in the same order: no deadlock between callers
            conn.execute("SELECT pg_advisory_xact_lock(%s::int4, %s::int4)", (LOCK_CLASS, shard))
        return device_stage(conn, shards=shards, limit=0, pks=pks)[0]


def refresh_area(conn: psycopg.Connection, *, tenant: str, level: str, name: str) -> int:
    """Bring one area's rollups up to date now (its devices first, then the area itself)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
    pks = [r[0] for r in conn.execute(
        sql.SQL("SELECT pk FROM devices WHERE tenant_id = %s AND {} = %s").format(
            sql.Identifier(level)), (tenant, name)).fetchall()]
    done = refresh_devices(conn, pks)
    while True:
        with conn.transaction():
            _require_read_committed(conn)
            conn.execute("SELECT pg_advisory_xact_lock(%s::int4, %s::int4)", AREA_LOCK)
            n = area_stage(conn, limit=AREA_LIMIT, area=(tenant, level, name))
        done += n
        if n == 0:
            return done


def _try_lock(conn: psycopg.Connection, key: tuple[int, int]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s::int4, %s::int4)", key).fetchone()
    return bool(row and row[0])


def _require_read_committed(conn: psycopg.Connection) -> None:
    # Each statement must see what committed before it: the lock may have just been released
    # by another worker whose results a repeatable-read snapshot would not see.
    row = conn.execute("SHOW transaction_isolation").fetchone()
    if not row or row[0] != "read committed":
        raise RuntimeError(f"rollup refresh needs READ COMMITTED, not {row[0] if row else '?'}")
