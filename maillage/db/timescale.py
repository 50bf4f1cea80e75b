"""The TimescaleDB path: hypertables, compression and chunk retention when the extension exists.

Not exercised by the test suite (TimescaleDB is not installable where it runs): every call is
guarded, and on plain PostgreSQL the functions answer "no" and change nothing. Queries and the
rollup refresh are the same on both paths; see docs/storage.md.
"""

from __future__ import annotations

import logging
from datetime import datetime

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

MIN_VERSION = (2, 11)  # first release accepting INSERT … ON CONFLICT into compressed chunks
# table -> (time column, chunk interval, compress after)
HYPERTABLES = {
    "readings": ("ts", "1 day", "7 days"),
    "rollup_15m": ("bucket", "7 days", "35 days"),
    "rollup_1h": ("bucket", "30 days", "35 days"),
}


def available(conn: psycopg.Connection) -> bool:
    """True when timescaledb is installed here, or can be: packaged and preloaded."""
    if installed(conn):
        return True
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'), "
        "current_setting('shared_preload_libraries')"
    ).fetchone()
    # CREATE EXTENSION fails unless the library is in shared_preload_libraries.
    return bool(row and row[0] and "timescaledb" in row[1])


def installed(conn: psycopg.Connection) -> bool:
    """True when the timescaledb extension is created in this database."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def is_hypertable(conn: psycopg.Connection, table: str) -> bool:
    """True when `table` is a TimescaleDB hypertable."""
    if not installed(conn):
        return False
    row = conn.execute(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = %s", (table,)
    ).fetchone()
    return row is not None


def enable_timescale(conn: psycopg.Connection) -> bool:
    """Turn readings and the fine rollups into compressed hypertables; False when unavailable.

    Idempotent. A table that is already a hypertable is left alone; a partitioned one is
    rebuilt (data copied) because TimescaleDB cannot convert a partitioned table in place.
    """
    if not available(conn):
        log.info("timescaledb not available: plain PostgreSQL partitioning stays")
        return False
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    version = tuple(int(p) for p in str(row[0] if row else "0").split(".")[:2])
    if version < MIN_VERSION:
        log.warning("timescaledb %s is older than %s: not used", version, MIN_VERSION)
        return False
    for table, (col, chunk, compress_after) in HYPERTABLES.items():
        if not is_hypertable(conn, table):
            _convert(conn, table, col, chunk)
        if _compressed(conn, table):
            continue  # changing the settings of compressed chunks fails: keep them
        conn.execute(sql.SQL(
            "ALTER TABLE {} SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'device_pk, metric_id', "
            "timescaledb.compress_orderby = {})"
        ).format(sql.Identifier(table), sql.Literal(col)))
        conn.execute("SELECT add_compression_policy(%s, %s::interval, if_not_exists => true)",
                     (table, compress_after))
    log.info("timescaledb %s: hypertables %s", ".".join(map(str, version)), ", ".join(HYPERTABLES))
    return True


def _compressed(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_name = %s", (table,)
    ).fetchone()
    return bool(row and row[0])


def _convert(conn: psycopg.Connection, table: str, col: str, chunk: str) -> None:
    """Rebuild a partitioned table as a hypertable with the same columns, key and rows."""
    new, old = sql.Identifier(f"{table}_ht"), sql.Identifier(table)
    conn.execute(sql.SQL(
        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ).format(new, old))
    key = "device_pk, metric_id, " + col
    conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(new, sql.SQL(key)))
    conn.execute("SELECT create_hypertable(%s, %s, chunk_time_interval => %s::interval)",
                 (f"{table}_ht", col, chunk))
    conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(new, old))
    conn.execute(sql.SQL("DROP TABLE {} CASCADE").format(old))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, old))


def drop_chunks(conn: psycopg.Connection, table: str, before: datetime) -> int:
    """Drop the chunks of a hypertable entirely older than `before`; returns how many."""
    with conn.transaction():
        rows = conn.execute("SELECT drop_chunks(%s, older_than => %s)", (table, before)).fetchall()
    return len(rows)
