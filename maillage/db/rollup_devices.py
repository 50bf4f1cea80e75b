"""The device stage of the rollup refresh: claimed 15-minute buckets recomputed, then coarser grains.

Claimed buckets widen for cumulative indexes (a new reading moves the interpolated boundaries up
to its neighbouring readings), are recomputed from raw data, and the hours, days and months
holding the buckets that changed follow; changed buckets queue their areas. SQL in `db/sql/`.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from maillage.db.grains import GRAINS, table
from maillage.db.sql import load


def session_settings(conn: psycopg.Connection) -> None:
    """Planner settings of a refresh transaction (SET LOCAL: undone when it ends)."""
    # JIT compiling these short set-based statements costs more than running them (~0.7 s), and
    # sorts of a whole commune should stay in memory.
    conn.execute("SET LOCAL jit = off")
    conn.execute("SET LOCAL work_mem = '64MB'")


def device_stage(conn: psycopg.Connection, *, shards: list[int], limit: int,
                 pks: list[int] | None) -> tuple[int, int]:
    """Recompute what queued buckets affect: claimed from the oldest queue rows of these shards
    up to `limit` entries, or (`pks`) every bucket queued for these devices, left queued.

    Returns (buckets recomputed, queue entries claimed).
    """
    conn.execute(load("rollup_scratch"))
    session_settings(conn)
    if pks is None:
        row = conn.execute(load("rollup_claim"), {"shards": shards, "limit": limit}).fetchone()
        rows, n = (int(row[0]), int(row[1])) if row else (0, 0)
    else:
        rows, n = 0, conn.execute(load("rollup_peek"), {"shards": shards, "pks": pks}).rowcount
    if n <= 0:
        return 0, rows
    conn.execute(load("rollup_expand"))
    conn.execute(load("rollup_runs"))
    conn.execute(load("rollup_stats"))
    conn.execute(load("rollup_energy"))
    _store(conn, "15m", targets="_t15")
    for src, grain in zip(GRAINS, GRAINS[1:], strict=False):
        conn.execute("DELETE FROM _tg; DELETE FROM _new")
        conn.execute(load("rollup_derive_targets"), {"grain": grain, "src": src})
        conn.execute(sql.SQL(load("rollup_derive")).format(src=table(src)), {"grain": grain})
        _store(conn, grain, targets="_tg")
    conn.execute(load("rollup_mark_areas"))
    return n, rows


def _store(conn: psycopg.Connection, grain: str, *, targets: str) -> None:
    conn.execute(sql.SQL(load("rollup_store")).format(
        table=table(grain), targets=sql.Identifier(targets), source=sql.Identifier("_new"),
        grain=sql.Literal(grain)))
