"""Monthly partitions of readings and of the fine rollups, created ahead of time."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

BEHIND = timedelta(days=31)  # late data of last month still lands in its own partition
AHEAD = timedelta(days=92)  # three months ahead: a missed run for weeks loses nothing


def ensure_partitions(conn: psycopg.Connection, now: datetime) -> int:
    """Create the missing monthly partitions around `now`; return how many were created."""
    row = conn.execute(
        "SELECT maillage_ensure_partitions(%s, %s)", (now - BEHIND, now + AHEAD)
    ).fetchone()
    return int(row[0]) if row else 0


def partitions(conn: psycopg.Connection, parent: str) -> list[tuple[str, datetime | None, datetime | None]]:
    """(name, lower, upper) of the range partitions of `parent`; bounds are None for DEFAULT."""
    rows = conn.execute(
        "SELECT c.relname, b[1]::timestamptz, b[2]::timestamptz FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid "
        "LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), "
        "  'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') AS b ON true "
        "WHERE i.inhparent = %s::regclass ORDER BY 2 NULLS FIRST",
        (parent,),
    ).fetchall()
    return [(name, lo, hi) for name, lo, hi in rows]
