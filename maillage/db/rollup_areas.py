"""The area stage of the rollup refresh: site, district and commune buckets from device rollups."""

from __future__ import annotations

import psycopg
from psycopg import sql

from maillage.db.grains import table
from maillage.db.rollup_devices import session_settings
from maillage.db.sql import load

# Claimed buckets further apart than this start a new run (one range scan per device and run).
RUN_GAP = {"15m": "1 hour", "1h": "6 hours", "1d": "4 days", "1mo": "100 days"}


def area_stage(conn: psycopg.Connection, *, limit: int, area: tuple[str, str, str] | None) -> int:
    """Claim queued area buckets (of one area, or any) and recompute them from device rollups."""
    conn.execute(load("area_scratch"))
    session_settings(conn)
    only = sql.SQL("WHERE (tenant_id, level, name) = (%(t)s, %(l)s, %(n)s)" if area else "")
    params = {"limit": limit, "t": area[0], "l": area[1], "n": area[2]} if area else {"limit": limit}
    n = conn.execute(sql.SQL(load("area_claim")).format(only=only), params).rowcount
    if n <= 0:
        return 0
    # Millions of device rows fold into a few hundred buckets: a hash aggregate does it in
    # memory, where the sort the planner picks (it cannot foresee the row count) spills to disk.
    conn.execute("SET LOCAL enable_sort = off")
    for level, grain in conn.execute("SELECT DISTINCT level, grain FROM _aclaim").fetchall():
        conn.execute(sql.SQL(load("area_compute")).format(level=sql.Identifier(level),
                                                          table=table(grain)),
                     {"level": level, "grain": grain, "gap": RUN_GAP[grain]})
    conn.execute("RESET enable_sort")
    conn.execute(load("area_store"))
    return n
