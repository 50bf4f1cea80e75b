"""Reader roles of Grafana's data sources and the tenants each may read (migration 0019).

`grafana_reader` reads every tenant; `add_reader` creates (or re-scopes) a login role that reads
one tenant only, for the data source of that tenant's Grafana organisation.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

GROUP_ROLE = "grafana_readers"
"""Holds the grants on the `grafana` schema; every reader role is a member."""
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def add_reader(*, conn: psycopg.Connection, role: str, tenant: str | None, password: str) -> None:
    """Create login role `role` (or set its password) reading `tenant` only (None: every tenant)."""
    if not _ROLE.match(role):
        raise ValueError(f"role name {role!r}: lower-case letters, digits and _ only")
    with conn.transaction():
        if tenant is not None and conn.execute(
                "SELECT 1 FROM tenants WHERE id = %s", (tenant,)).fetchone() is None:
            raise ValueError(f"unknown tenant {tenant!r}")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(GROUP_ROLE), sql.Identifier(role)))
        conn.execute("INSERT INTO grafana_scopes (role_name, tenant_id) VALUES (%s, %s) "
                     "ON CONFLICT (role_name) DO UPDATE SET tenant_id = EXCLUDED.tenant_id",
                     (role, tenant))


def list_readers(*, conn: psycopg.Connection) -> list[dict[str, str | None]]:
    """Every reader role and the tenant it reads (None: every tenant)."""
    rows = conn.execute("SELECT role_name, tenant_id FROM grafana_scopes ORDER BY role_name").fetchall()
    return [{"role": r[0], "tenant": r[1]} for r in rows]
