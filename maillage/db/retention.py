"""Retention per tenant and per kind of data: drop whole partitions when possible, else DELETE."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from maillage.db import partitions, rollups, timescale

log = logging.getLogger(__name__)

KINDS = ("raw", "care_raw", "rollup_15m", "rollup_1h", "rollup_1d", "rollup_1mo", "events",
         "care_events", "rejected")


def set_retention(conn: psycopg.Connection, *, tenant: str | None, kind: str,
                  keep: timedelta | None) -> None:
    """Keep `kind` for `tenant` (None: the default of every tenant) for `keep` (None: forever)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    conn.execute(
        "INSERT INTO retention_policies (tenant_id, kind, keep) VALUES (%s, %s, %s) "
        "ON CONFLICT (tenant_id, kind) DO UPDATE SET keep = EXCLUDED.keep",
        (tenant, kind, keep),
    )


def retention(conn: psycopg.Connection, *, tenant: str | None, kind: str) -> timedelta | None:
    """The effective retention of `kind` for `tenant` (its own, else the default); None: forever."""
    row = conn.execute("SELECT maillage_keep(%s, %s)", (tenant, kind)).fetchone()
    return row[0] if row else None


def apply_retention(conn: psycopg.Connection, now: datetime) -> dict[str, int]:
    """Remove what is past retention; returns rows deleted (and partitions dropped) per table."""
    out: dict[str, int] = {}
    tenants = [r[0] for r in conn.execute("SELECT id FROM tenants ORDER BY id").fetchall()]
    out.update(_device_table(conn, "readings", "ts", ("raw", "care_raw"), tenants, now))
    out.update(_device_table(conn, "events", "ts", ("events", "care_events"), tenants, now))
    for grain in rollups.GRAINS:
        kind = f"rollup_{grain}"
        out.update(_device_table(conn, kind, "bucket", (kind, kind), tenants, now))
        out[f"rollup_area_{grain}"] = _per_tenant(
            conn, "DELETE FROM rollup_area WHERE tenant_id = %(t)s AND grain = %(g)s "
            "AND bucket < %(cutoff)s", kind, tenants, now, {"g": grain})
    out["rejected"] = _per_tenant(
        conn, "DELETE FROM rejected WHERE tenant_id = %(t)s AND received_at < %(cutoff)s",
        "rejected", tenants, now)
    out["rejected"] += _orphans(
        conn, "DELETE FROM rejected r WHERE r.received_at < %(cutoff)s AND (r.tenant_id IS NULL "
        "OR NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = r.tenant_id))", "rejected", now)
    log.info("retention applied: %s", {k: v for k, v in out.items() if v})
    return out


def _cutoff(conn: psycopg.Connection, tenant: str | None, kind: str, now: datetime) -> datetime | None:
    keep = retention(conn, tenant=tenant, kind=kind)
    return None if keep is None else now - keep


def _device_table(conn: psycopg.Connection, table: str, col: str, kinds: tuple[str, str],
                  tenants: list[str], now: datetime) -> dict[str, int]:
    """Retention of a table keyed by device: `kinds` is (other devices, care devices)."""
    out = {table: 0, f"{table}_partitions_dropped": 0}
    # The oldest cutoff over every tenant and the default: data before it is gone for all.
    cutoffs = [_cutoff(conn, t, k, now) for t in [None, *tenants] for k in set(kinds)]
    if all(c is not None for c in cutoffs):
        everyone = min(c for c in cutoffs if c is not None)
        out[f"{table}_partitions_dropped"] = _drop_before(conn, table, everyone)
    plain = sql.SQL(
        "DELETE FROM {table} x USING devices d WHERE d.pk = x.device_pk AND d.tenant_id = %(t)s "
        "AND (left(d.type, 5) = 'care_') = %(care)s AND x.{col} < %(cutoff)s"
    ).format(table=sql.Identifier(table), col=sql.Identifier(col))
    for care, kind in ((False, kinds[0]), (True, kinds[1])):
        out[table] += _per_tenant(conn, plain, kind, tenants, now, {"care": care})
    # Rows of devices deleted since: the default retention of the plain kind.
    out[table] += _orphans(conn, sql.SQL(
        "DELETE FROM {table} x WHERE x.{col} < %(cutoff)s "
        "AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.pk = x.device_pk)"
    ).format(table=sql.Identifier(table), col=sql.Identifier(col)), kinds[0], now)
    return out


def _per_tenant(conn: psycopg.Connection, query: str | sql.Composed, kind: str,
                tenants: list[str], now: datetime, extra: dict[str, object] | None = None) -> int:
    deleted = 0
    for tenant in tenants:
        cutoff = _cutoff(conn, tenant, kind, now)
        if cutoff is None:
            continue
        with conn.transaction():
            deleted += conn.execute(query, {"t": tenant, "cutoff": cutoff, **(extra or {})}).rowcount
    return deleted


def _orphans(conn: psycopg.Connection, query: str | sql.Composed, kind: str, now: datetime) -> int:
    cutoff = _cutoff(conn, None, kind, now)
    if cutoff is None:
        return 0
    with conn.transaction():
        return conn.execute(query, {"cutoff": cutoff}).rowcount


def _drop_before(conn: psycopg.Connection, table: str, cutoff: datetime) -> int:
    """Drop the partitions (or TimescaleDB chunks) of `table` entirely before `cutoff`."""
    if timescale.is_hypertable(conn, table):
        return timescale.drop_chunks(conn, table, cutoff)
    if not _is_partitioned(conn, table):
        return 0
    dropped = 0
    for name, _lo, hi in partitions.partitions(conn, table):
        if hi is not None and hi <= cutoff:
            with conn.transaction():
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            dropped += 1
    return dropped


def _is_partitioned(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()
    return bool(row and row[0] == "p")
