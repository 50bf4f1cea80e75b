"""Bounds on metric names outside the vocabulary: per tenant, and in all (the `metrics` key).

`metrics.id` is a smallint (every reading row carries it): unbounded, one device sending a new
name per message would exhaust it after 32,767 names and every later batch would fail, for all
tenants. A tenant may bring at most `PER_TENANT` unknown names, and all tenants together at most
`TOTAL` (room left below the key's limit for the vocabulary); a reading naming one more is
refused (`too_many_metric_names`) and the rest of the batch is stored.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

PER_TENANT = 500
TOTAL = 30_000
_LOCK = 0x6D657472  # 'metr': one writer at a time decides about new names


def admit(conn: psycopg.Connection, *, wanted: dict[str, set[str]]) -> dict[str, set[str]]:
    """Record the unknown names each tenant wants (tenant -> names) within the bounds, in the
    caller's transaction; returns the names refused per tenant (empty when all fit)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
    tenants = sorted(wanted)
    have: dict[str, set[str]] = {t: set() for t in tenants}
    for tenant, name in conn.execute(
            "SELECT tenant_id, name FROM metric_tenants WHERE tenant_id = ANY (%s)", (tenants,)):
        have[tenant].add(name)
    row = conn.execute("SELECT count(*) FROM metrics WHERE NOT known").fetchone()
    total = row[0] if row else 0
    existing = _existing(conn, {n for names in wanted.values() for n in names})
    refused: dict[str, set[str]] = {}
    rows: list[tuple[str, str]] = []
    for tenant in tenants:
        for name in sorted(wanted[tenant] - have[tenant]):
            new_name = name not in existing
            if len(have[tenant]) >= PER_TENANT or (new_name and total >= TOTAL):
                refused.setdefault(tenant, set()).add(name)
                continue
            have[tenant].add(name)
            rows.append((tenant, name))
            if new_name:
                existing.add(name)
                total += 1
    if rows:
        conn.execute("INSERT INTO metric_tenants (tenant_id, name) SELECT * FROM "
                     "unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                     ([r[0] for r in rows], [r[1] for r in rows]))
    return refused


def _existing(conn: psycopg.Connection, names: Iterable[str]) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM metrics WHERE name = ANY (%s)",
                                       (sorted(names),))}
