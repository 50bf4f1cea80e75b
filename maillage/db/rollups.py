"""Rollups at 15 min, hour, day and month, per device and per area, kept right under late data.

Writers queue the 15-minute buckets they touch in `rollup_dirty`, in their own transaction.
`refresh_rollups` claims queued buckets, widens them for cumulative indexes (a new reading moves
the interpolated boundaries up to its neighbouring readings), recomputes those 15-minute buckets
from raw data, then the hours, days and months holding the buckets that changed, then queues and
recomputes the site / district / commune buckets. Every step is a recomputation, never an
increment, so running it twice, or after duplicates, gives the same rows. See docs/storage.md.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, get_args

import psycopg
from psycopg import sql

Bucket = Literal["15m", "1h", "1d", "1mo"]
"""A rollup grain: 15 minutes, an hour, a day, a month (local time for the last three)."""
Level = Literal["site", "district", "commune"]
"""An area level rolled up over its devices."""
GRAINS: tuple[Bucket, ...] = get_args(Bucket)
LEVELS: tuple[Level, ...] = get_args(Level)
SHARDS = 4  # devices are split by pk % SHARDS so that two workers can refresh at once
LOCK_CLASS = 0x6D61  # advisory lock keys: (LOCK_CLASS, shard) per shard, (LOCK_CLASS + 1, 0) for areas
AREA_LOCK = (LOCK_CLASS + 1, 0)
DEFAULT_LIMIT = 100_000  # device queue entries (device, metric, bucket) per shard and pass
AREA_LIMIT = 100_000  # area queue rows (one per area bucket) per pass
VACUUM_EVERY_S = 10.0

# Scratch tables, made once per session and emptied per stage (not dropped and re-created: a
# refresh every few seconds would churn the catalogs).
_TEMP = """
CREATE TEMP TABLE IF NOT EXISTS _claim (device_pk bigint, metric_id smallint, bucket timestamptz)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _t15 (device_pk bigint, metric_id smallint, bucket timestamptz,
    PRIMARY KEY (device_pk, metric_id, bucket)) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _runs (device_pk bigint, metric_id smallint, kind text,
    lo timestamptz, hi timestamptz, max_w double precision) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _new (device_pk bigint, metric_id smallint, bucket timestamptz,
    n integer, vsum double precision, vmin double precision, vmax double precision,
    energy double precision, PRIMARY KEY (device_pk, metric_id, bucket)) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _changed (grain text, device_pk bigint, metric_id smallint,
    bucket timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _tg (device_pk bigint, metric_id smallint, bucket timestamptz,
    tz text) ON COMMIT DELETE ROWS;
DELETE FROM _claim; DELETE FROM _t15; DELETE FROM _runs; DELETE FROM _new; DELETE FROM _changed;
DELETE FROM _tg;
"""

# The queue (migration 0007) holds one row per written batch and shard, with the batch's distinct
# (device, metric, bucket number) in three arrays. The background refresher deletes the rows it
# claims; a query's synchronous refresh reads its devices' entries and leaves them queued.
_UNNEST = """
SELECT DISTINCT u.device_pk, u.metric_id, timestamptz 'epoch' + u.n * interval '15 minutes'
FROM {rows} q CROSS JOIN LATERAL unnest(q.device_pks, q.metric_ids, q.buckets)
    AS u(device_pk, metric_id, n)
"""

# Oldest rows first until `limit` entries (at least one row). Only a refresher holding the
# shard's advisory lock deletes queue rows, so no other claim can race this one; a writer only
# inserts, and a row committed meanwhile waits for the next pass.
_CLAIM = """
WITH w AS (
    SELECT ctid, sum(cardinality(device_pks)) OVER (ORDER BY ctid ROWS UNBOUNDED PRECEDING)
               - cardinality(device_pks) AS before
    FROM rollup_dirty WHERE shard = ANY (%(shards)s)
), c AS (
    DELETE FROM rollup_dirty WHERE ctid = ANY (ARRAY(SELECT ctid FROM w WHERE before < %(limit)s))
    RETURNING device_pks, metric_ids, buckets
), ins AS (
    INSERT INTO _claim """ + _UNNEST.format(rows="c") + """ RETURNING 1)
SELECT (SELECT coalesce(sum(cardinality(device_pks)), 0) FROM c), (SELECT count(*) FROM ins)
"""

_PEEK = "INSERT INTO _claim " + _UNNEST.format(rows="rollup_dirty") + \
    "WHERE q.shard = ANY (%(shards)s) AND u.device_pk = ANY (%(pks)s)"


def queue_from(select: str) -> str:
    """SQL queueing the rows of `select` (columns device_pk, metric_id, bucket): a row per shard."""
    return (
        "INSERT INTO rollup_dirty (shard, device_pks, metric_ids, buckets) "
        f"SELECT mod(device_pk, {SHARDS}), array_agg(device_pk), array_agg(metric_id), "
        "       array_agg(floor(extract(epoch FROM bucket) / 900)::integer) "
        f"FROM ({select}) k GROUP BY 1"
    )


# A claimed bucket of an index metric widens to the buckets of the readings just before and
# just after it: their interpolated boundaries depend on it. For a run of consecutive claimed
# buckets the union of those ranges is the run widened at its two ends, so only the ends are
# looked up. Claims and buckets older than the raw retention (one day of margin) are dropped:
# their raw data may be cut already, and rollups outlive raw data.
_EXPAND = """
WITH dk AS (
    SELECT cl.device_pk, cl.metric_id, cl.bucket, d.tenant_id,
           CASE WHEN left(d.type, 5) = 'care_' THEN 'care_raw' ELSE 'raw' END AS kind
    FROM _claim cl JOIN devices d ON d.pk = cl.device_pk
), kinds AS MATERIALIZED (  -- maillage_keep once per tenant and kind, not per claimed row
    SELECT tenant_id, kind, now() - maillage_keep(tenant_id, kind) + interval '1 day' AS kept
    FROM (SELECT DISTINCT tenant_id, kind FROM dk) t
), k AS (
    SELECT dk.device_pk, dk.metric_id, dk.bucket, kinds.kept
    FROM dk JOIN kinds USING (tenant_id, kind)
), c AS (
    SELECT device_pk, metric_id, kept, min(bucket) AS lo, max(bucket) AS hi
    FROM (SELECT *, bucket - interval '15 minutes'
                    * row_number() OVER (PARTITION BY device_pk, metric_id ORDER BY bucket) AS grp
          FROM k WHERE kept IS NULL OR bucket >= kept) t
    GROUP BY device_pk, metric_id, kept, grp
)
INSERT INTO _t15 (device_pk, metric_id, bucket)
SELECT DISTINCT c.device_pk, c.metric_id, g.b
FROM c
JOIN metrics m ON m.id = c.metric_id
CROSS JOIN LATERAL (SELECT
    CASE WHEN m.kind = 'index' THEN coalesce(
        (SELECT maillage_bucket15(r.ts) FROM readings r
          WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id
            AND r.ts < c.lo AND r.ts >= c.lo - interval '1 day'
          ORDER BY r.ts DESC LIMIT 1),
        (SELECT maillage_bucket15(r.ts) FROM readings r
          WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id
            AND r.ts < c.lo - interval '1 day'
          ORDER BY r.ts DESC LIMIT 1)) END AS lo,
    CASE WHEN m.kind = 'index' THEN coalesce(
        (SELECT maillage_bucket15(r.ts) FROM readings r
          WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id
            AND r.ts >= c.hi + interval '15 minutes' AND r.ts < c.hi + interval '1 day'
          ORDER BY r.ts LIMIT 1),
        (SELECT maillage_bucket15(r.ts) FROM readings r
          WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id
            AND r.ts >= c.hi + interval '1 day'
          ORDER BY r.ts LIMIT 1)) END AS hi
) e
CROSS JOIN LATERAL generate_series(coalesce(e.lo, c.lo), coalesce(e.hi, c.hi),
                                   interval '15 minutes') AS g(b)
WHERE c.kept IS NULL OR g.b >= c.kept
"""

# Contiguous runs of target buckets: each run is read from raw data with one range scan.
_RUNS = """
INSERT INTO _runs (device_pk, metric_id, kind, lo, hi, max_w)
SELECT s.device_pk, s.metric_id, m.kind, s.lo, s.hi, maillage_max_power_w(d.meta)
FROM (SELECT device_pk, metric_id, min(bucket) AS lo, max(bucket) + interval '15 minutes' AS hi
      FROM (SELECT *, bucket - interval '15 minutes'
                      * row_number() OVER (PARTITION BY device_pk, metric_id ORDER BY bucket) AS grp
            FROM _t15) t
      GROUP BY device_pk, metric_id, grp) s
JOIN metrics m ON m.id = s.metric_id
JOIN devices d ON d.pk = s.device_pk
"""

# Range reads go through LATERAL (OFFSET 0 keeps them from being flattened into joins): a hash
# join on (device, metric) with a range filter would compare every pair of a long gap.
_STATS = """
INSERT INTO _new (device_pk, metric_id, bucket, n, vsum, vmin, vmax, energy)
SELECT u.device_pk, u.metric_id, a.b, a.n, a.vsum, a.vmin, a.vmax,
       CASE WHEN u.kind = 'index' THEN 0.0 END
FROM _runs u CROSS JOIN LATERAL (
    SELECT maillage_bucket15(r.ts) AS b, count(*) AS n, sum(r.value) AS vsum,
           min(r.value) AS vmin, max(r.value) AS vmax
    FROM readings r
    WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id AND r.ts >= u.lo AND r.ts < u.hi
    GROUP BY 1) a
"""

# Neighbour lookups look one day away first: an unbounded "last reading before" visits every
# monthly partition. The second branch of each UNION ALL runs only when the first finds nothing.
# Energy of index metrics: each step between consecutive readings (maillage_energy_step: resets,
# rollovers, glitches) is spread evenly over its interval, and a bucket gets the share of every
# interval overlapping it. This is "index at end minus index at start, interpolated linearly".
_ENERGY = """
WITH seg AS (
    SELECT u.device_pk, u.metric_id, u.lo, u.hi, u.max_w, r.ts, r.value
    FROM _runs u CROSS JOIN LATERAL (
        SELECT r.ts, r.value FROM readings r
        WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
          AND r.ts >= u.lo AND r.ts < u.hi OFFSET 0) r
    WHERE u.kind = 'index'
  UNION ALL
    SELECT u.device_pk, u.metric_id, u.lo, u.hi, u.max_w, p.ts, p.value
    FROM _runs u CROSS JOIN LATERAL (
        (SELECT r.ts, r.value FROM readings r
         WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
           AND r.ts < u.lo AND r.ts >= u.lo - interval '1 day'
         ORDER BY r.ts DESC LIMIT 1)
        UNION ALL
        (SELECT r.ts, r.value FROM readings r
         WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
           AND r.ts < u.lo - interval '1 day'
         ORDER BY r.ts DESC LIMIT 1)
        LIMIT 1) p
    WHERE u.kind = 'index'
  UNION ALL
    SELECT u.device_pk, u.metric_id, u.lo, u.hi, u.max_w, x.ts, x.value
    FROM _runs u CROSS JOIN LATERAL (
        (SELECT r.ts, r.value FROM readings r
         WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
           AND r.ts >= u.hi AND r.ts < u.hi + interval '1 day'
         ORDER BY r.ts LIMIT 1)
        UNION ALL
        (SELECT r.ts, r.value FROM readings r
         WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
           AND r.ts >= u.hi + interval '1 day'
         ORDER BY r.ts LIMIT 1)
        LIMIT 1) x
    WHERE u.kind = 'index'
), steps AS (
    SELECT device_pk, metric_id, lo, hi, max_w, lag(ts) OVER w AS t0, lag(value) OVER w AS v0,
           ts AS t1, value AS v1
    FROM seg WINDOW w AS (PARTITION BY device_pk, metric_id, lo ORDER BY ts)
), iv AS (
    SELECT device_pk, metric_id, lo, hi, t0, t1, extract(epoch FROM t1 - t0)::float8 AS secs,
           maillage_energy_step(v0, v1, extract(epoch FROM t1 - t0)::float8, max_w) AS step
    FROM steps WHERE t0 IS NOT NULL
)
INSERT INTO _new AS n (device_pk, metric_id, bucket, n, energy)
SELECT device_pk, metric_id, b, 0, sum(e) FROM (
    -- A step inside one bucket (most of them when readings are frequent) is all that bucket's.
    SELECT iv.device_pk, iv.metric_id, b.b, iv.step AS e
    FROM iv CROSS JOIN LATERAL (SELECT maillage_bucket15(iv.t0) AS b) b
    WHERE b.b = maillage_bucket15(iv.t1) AND b.b >= iv.lo AND b.b < iv.hi
  UNION ALL
    SELECT iv.device_pk, iv.metric_id, g.b,
           iv.step * extract(epoch FROM least(iv.t1, g.b + interval '15 minutes')
                                        - greatest(iv.t0, g.b))::float8 / iv.secs
    FROM iv CROSS JOIN LATERAL generate_series(greatest(maillage_bucket15(iv.t0), iv.lo),
                                               least(iv.t1, iv.hi - interval '15 minutes'),
                                               interval '15 minutes') AS g(b)
    WHERE g.b < iv.t1 AND maillage_bucket15(iv.t0) <> maillage_bucket15(iv.t1)
) x
GROUP BY 1, 2, 3
ON CONFLICT (device_pk, metric_id, bucket) DO UPDATE SET energy = EXCLUDED.energy
"""

# Store recomputed rows of one grain; rows that lost all data go. Unchanged rows are not
# rewritten, and only rows that did change are passed on to the coarser grain.
_STORE = """
WITH gone AS (
    DELETE FROM {table} r USING {targets} t
    WHERE r.device_pk = t.device_pk AND r.metric_id = t.metric_id AND r.bucket = t.bucket
      AND NOT EXISTS (SELECT 1 FROM {source} s WHERE s.device_pk = t.device_pk
                      AND s.metric_id = t.metric_id AND s.bucket = t.bucket)
    RETURNING r.device_pk, r.metric_id, r.bucket
), up AS (
    INSERT INTO {table} AS r (device_pk, metric_id, bucket, n, vsum, vmin, vmax, energy)
    SELECT device_pk, metric_id, bucket, n, vsum, vmin, vmax, energy FROM {source}
    ON CONFLICT (device_pk, metric_id, bucket) DO UPDATE SET n = EXCLUDED.n,
        vsum = EXCLUDED.vsum, vmin = EXCLUDED.vmin, vmax = EXCLUDED.vmax, energy = EXCLUDED.energy
    WHERE (r.n, r.vsum, r.vmin, r.vmax, r.energy)
          IS DISTINCT FROM (EXCLUDED.n, EXCLUDED.vsum, EXCLUDED.vmin, EXCLUDED.vmax, EXCLUDED.energy)
    RETURNING r.device_pk, r.metric_id, r.bucket
)
INSERT INTO _changed (grain, device_pk, metric_id, bucket)
SELECT {grain}, * FROM gone UNION SELECT {grain}, * FROM up
"""

_DERIVE_TARGETS = """
INSERT INTO _tg (device_pk, metric_id, bucket, tz)
SELECT DISTINCT c.device_pk, c.metric_id, maillage_bucket(c.bucket, %(grain)s, t.timezone), t.timezone
FROM _changed c
JOIN devices d ON d.pk = c.device_pk
JOIN tenants t ON t.id = d.tenant_id
WHERE c.grain = %(src)s
"""

_DERIVE = """
INSERT INTO _new (device_pk, metric_id, bucket, n, vsum, vmin, vmax, energy)
SELECT x.device_pk, x.metric_id, x.bucket, a.n, a.vsum, a.vmin, a.vmax, a.energy
FROM _tg x CROSS JOIN LATERAL (
    SELECT count(*) AS rows, sum(s.n) AS n, sum(s.vsum) AS vsum, min(s.vmin) AS vmin,
           max(s.vmax) AS vmax, sum(s.energy) AS energy
    FROM {src} s
    WHERE s.device_pk = x.device_pk AND s.metric_id = x.metric_id
      AND s.bucket >= x.bucket AND s.bucket < maillage_bucket_end(x.bucket, %(grain)s, x.tz)) a
WHERE a.rows > 0
"""

_MARK_AREAS = """
INSERT INTO rollup_area_dirty (tenant_id, level, name, metric_id, grain, bucket)
SELECT DISTINCT d.tenant_id, l.level, l.name, c.metric_id, c.grain, c.bucket
FROM _changed c
JOIN metrics m ON m.id = c.metric_id AND m.kind IN ('index', 'power')
JOIN devices d ON d.pk = c.device_pk
CROSS JOIN LATERAL (VALUES ('site', d.site), ('district', d.district), ('commune', d.commune))
    AS l(level, name)
WHERE l.name IS NOT NULL
"""

_AREA_TEMP = """
CREATE TEMP TABLE IF NOT EXISTS _aclaim (tenant_id text, level text, name text,
    metric_id smallint, grain text, bucket timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _anew (LIKE rollup_area INCLUDING INDEXES) ON COMMIT DELETE ROWS;
DELETE FROM _aclaim; DELETE FROM _anew;
"""

_AREA_CLAIM = """
WITH c AS (
    DELETE FROM rollup_area_dirty WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM rollup_area_dirty {only} LIMIT %(limit)s FOR UPDATE SKIP LOCKED))
    RETURNING tenant_id, level, name, metric_id, grain, bucket)
INSERT INTO _aclaim SELECT DISTINCT * FROM c
"""

# Claimed buckets are grouped into runs (a new run after a long gap), and each device of the area
# is read with one range scan per run: far cheaper than one probe per device and bucket. Every
# bucket of a run is recomputed (the few unclaimed ones inside it too: same values), which keeps
# a join between two large intermediate results, easily misplanned, out of the statement.
_AREA_COMPUTE = """
WITH runs AS MATERIALIZED (
    SELECT row_number() OVER () AS id, tenant_id, name, metric_id, min(bucket) AS lo,
           max(bucket) AS hi
    FROM (SELECT *, sum(gap) OVER (PARTITION BY tenant_id, name, metric_id ORDER BY bucket) AS run
          FROM (SELECT tenant_id, name, metric_id, bucket,
                       coalesce((bucket - lag(bucket) OVER (PARTITION BY tenant_id, name, metric_id
                                 ORDER BY bucket) > %(gap)s::interval)::int, 0) AS gap
                FROM _aclaim WHERE level = %(level)s AND grain = %(grain)s) x) y
    GROUP BY tenant_id, name, metric_id, run
), agg AS MATERIALIZED (
    -- grouped by integer run id, not by names: sorting text keys costs more than the join
    SELECT u.id, r.bucket, count(*) AS devices, sum(r.n) AS n, sum(r.vsum) AS vsum,
           min(r.vmin) AS vmin, max(r.vmax) AS vmax, sum(r.energy) AS energy
    FROM runs u
    JOIN devices d ON d.tenant_id = u.tenant_id AND d.{level} = u.name
    CROSS JOIN LATERAL (
        SELECT * FROM {table} r
        WHERE r.device_pk = d.pk AND r.metric_id = u.metric_id
          AND r.bucket >= u.lo AND r.bucket <= u.hi OFFSET 0) r
    GROUP BY u.id, r.bucket
)
INSERT INTO _anew
SELECT u.tenant_id, %(level)s, u.name, u.metric_id, %(grain)s, g.bucket, g.devices, g.n, g.vsum,
       g.vmin, g.vmax, g.energy
FROM agg g JOIN runs u ON u.id = g.id
"""



_RUN_GAP = {"15m": "1 hour", "1h": "6 hours", "1d": "4 days", "1mo": "100 days"}


_AREA_STORE = """
WITH gone AS (
    DELETE FROM rollup_area r USING _aclaim a
    WHERE (r.tenant_id, r.level, r.name, r.metric_id, r.grain, r.bucket)
          = (a.tenant_id, a.level, a.name, a.metric_id, a.grain, a.bucket)
      AND NOT EXISTS (SELECT 1 FROM _anew n
                      WHERE (n.tenant_id, n.level, n.name, n.metric_id, n.grain, n.bucket)
                            = (a.tenant_id, a.level, a.name, a.metric_id, a.grain, a.bucket))
)
INSERT INTO rollup_area AS r SELECT * FROM _anew
ON CONFLICT (tenant_id, level, name, metric_id, grain, bucket) DO UPDATE SET
    devices = EXCLUDED.devices, n = EXCLUDED.n, vsum = EXCLUDED.vsum, vmin = EXCLUDED.vmin,
    vmax = EXCLUDED.vmax, energy = EXCLUDED.energy
"""


def table(grain: str) -> sql.Identifier:
    """The device rollup table of a grain."""
    if grain not in GRAINS:
        raise ValueError(f"unknown bucket {grain!r}; use one of {', '.join(GRAINS)}")
    return sql.Identifier(f"rollup_{grain}")


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
                n, rows = _device_stage(conn, shards=[shard], limit=limit, pks=None)
                done += n
                full = full or rows >= limit
    with conn.transaction():
        _require_read_committed(conn)
        if _try_lock(conn, AREA_LOCK):
            n = _area_stage(conn, limit=area_limit, area=None)
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
        return _device_stage(conn, shards=shards, limit=0, pks=pks)[0]


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
            n = _area_stage(conn, limit=AREA_LIMIT, area=(tenant, level, name))
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


def _session_settings(conn: psycopg.Connection) -> None:
    # JIT compiling these short set-based statements costs more than running them (~0.7 s), and
    # sorts of a whole commune should stay in memory. SET LOCAL: undone when the transaction ends.
    conn.execute("SET LOCAL jit = off")
    conn.execute("SET LOCAL work_mem = '64MB'")


def _device_stage(conn: psycopg.Connection, *, shards: list[int], limit: int,
                  pks: list[int] | None) -> tuple[int, int]:
    """Recompute what queued buckets affect: claimed from the oldest queue rows of these shards
    up to `limit` entries, or (`pks`) every bucket queued for these devices, left queued.

    Returns (buckets recomputed, queue entries claimed).
    """
    conn.execute(_TEMP)
    _session_settings(conn)
    if pks is None:
        row = conn.execute(_CLAIM, {"shards": shards, "limit": limit}).fetchone()
        rows, n = (int(row[0]), int(row[1])) if row else (0, 0)
    else:
        rows, n = 0, conn.execute(_PEEK, {"shards": shards, "pks": pks}).rowcount
    if n <= 0:
        return 0, rows
    conn.execute(_EXPAND)
    conn.execute(_RUNS)
    conn.execute(_STATS)
    conn.execute(_ENERGY)
    _store(conn, "15m", targets="_t15")
    for src, grain in zip(GRAINS, GRAINS[1:], strict=False):
        conn.execute("DELETE FROM _tg; DELETE FROM _new")
        conn.execute(_DERIVE_TARGETS, {"grain": grain, "src": src})
        conn.execute(sql.SQL(_DERIVE).format(src=table(src)), {"grain": grain})
        _store(conn, grain, targets="_tg")
    conn.execute(_MARK_AREAS)
    return n, rows


def _store(conn: psycopg.Connection, grain: str, *, targets: str) -> None:
    conn.execute(sql.SQL(_STORE).format(table=table(grain), targets=sql.Identifier(targets),
                                        source=sql.Identifier("_new"), grain=sql.Literal(grain)))


def _area_stage(conn: psycopg.Connection, *, limit: int, area: tuple[str, str, str] | None) -> int:
    """Claim queued area buckets (of one area, or any) and recompute them from device rollups."""
    conn.execute(_AREA_TEMP)
    _session_settings(conn)
    only = sql.SQL("WHERE (tenant_id, level, name) = (%(t)s, %(l)s, %(n)s)" if area else "")
    params = {"limit": limit, "t": area[0], "l": area[1], "n": area[2]} if area else {"limit": limit}
    n = conn.execute(sql.SQL(_AREA_CLAIM).format(only=only), params).rowcount
    if n <= 0:
        return 0
    # Millions of device rows fold into a few hundred buckets: a hash aggregate does it in
    # memory, where the sort the planner picks (it cannot foresee the row count) spills to disk.
    conn.execute("SET LOCAL enable_sort = off")
    for level, grain in conn.execute("SELECT DISTINCT level, grain FROM _aclaim").fetchall():
        conn.execute(sql.SQL(_AREA_COMPUTE).format(level=sql.Identifier(level), table=table(grain)),
                     {"level": level, "grain": grain, "gap": _RUN_GAP[grain]})
    conn.execute("RESET enable_sort")
    conn.execute(_AREA_STORE)
    return n


def seed_commune(conn: psycopg.Connection, *, tenant: str = "bench", commune: str = "bench",
                 meters: int = 10_000, days: int = 365, tz: str = "Europe/Paris") -> list[int]:
    """Benchmark data: a commune of `meters` meters with `days` of daily energy; returns pks.

    Device rollups (day and month) are written directly, as 15-minute raw data for 10,000
    meters over a year would be 350 M rows; the area rollups are then computed by the refresh,
    so a commune query reads what production would. Meters sit in 10 districts of 100 sites.
    """
    p = {"t": tenant, "c": commune, "n": meters, "tz": tz, "days": days}
    conn.execute("INSERT INTO tenants (id, name, timezone) VALUES (%(t)s, %(t)s, %(tz)s) "
                 "ON CONFLICT (id) DO NOTHING", p)
    conn.execute(
        "INSERT INTO devices (tenant_id, device_id, type, mqtt_username, site, district, commune) "
        "SELECT %(t)s, %(c)s || '-m' || i, 'meter', %(t)s || '-' || %(c)s || '-m' || i, "
        "       %(c)s || '-s' || i %% 100, %(c)s || '-d' || i %% 10, %(c)s "
        "FROM generate_series(1, %(n)s) i ON CONFLICT (tenant_id, device_id) DO NOTHING", p)
    p["pks"] = pks = [r[0] for r in conn.execute(
        "SELECT pk FROM devices WHERE tenant_id = %(t)s AND commune = %(c)s ORDER BY pk", p)]
    conn.execute("INSERT INTO metrics (name) VALUES ('energy_import_wh') ON CONFLICT DO NOTHING")
    # A seasonal load (more in winter) varying by meter: about 2 to 24 kWh a day.
    conn.execute(
        "INSERT INTO rollup_1d (device_pk, metric_id, bucket, n, energy) "
        "SELECT pk, m.id, (date_trunc('day', now() AT TIME ZONE %(tz)s) - k * interval '1 day') "
        "       AT TIME ZONE %(tz)s, 96, "
        "       (8000 + 4000 * cos(2 * pi() * (extract(doy FROM now()) - k) / 365.0)) "
        "       * (0.5 + (pk %% 97) / 64.0) "
        "FROM metrics m, unnest(%(pks)s::bigint[]) pk, generate_series(1, %(days)s) k "
        "WHERE m.name = 'energy_import_wh' ON CONFLICT DO NOTHING", p)
    conn.execute(
        "INSERT INTO rollup_1mo (device_pk, metric_id, bucket, n, energy) "
        "SELECT device_pk, metric_id, maillage_bucket(bucket, '1mo', %(tz)s), sum(n), sum(energy) "
        "FROM rollup_1d WHERE device_pk = ANY (%(pks)s) GROUP BY 1, 2, 3 "
        "ON CONFLICT (device_pk, metric_id, bucket) DO UPDATE SET n = EXCLUDED.n, "
        "energy = EXCLUDED.energy", p)
    conn.execute(
        "INSERT INTO rollup_area_dirty (tenant_id, level, name, metric_id, grain, bucket) "
        "SELECT %(t)s, a.level, a.name, b.metric_id, b.grain, b.bucket "
        "FROM (SELECT DISTINCT l.level, l.name FROM devices d CROSS JOIN LATERAL (VALUES "
        "      ('site', d.site), ('district', d.district), ('commune', d.commune)) l(level, name) "
        "      WHERE d.pk = ANY (%(pks)s)) a, "
        "     (SELECT DISTINCT metric_id, '1d' AS grain, bucket FROM rollup_1d "
        "      WHERE device_pk = %(first)s "
        "      UNION SELECT DISTINCT metric_id, '1mo', bucket FROM rollup_1mo "
        "      WHERE device_pk = %(first)s) b", {**p, "first": pks[0] if pks else None})
    while refresh_rollups(conn, limit=1_000_000):
        pass
    return pks
