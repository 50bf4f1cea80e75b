"""Tenants: communes, groups of communes (EPCI), social landlords."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from maillage.errors import RegistryError
from maillage.registry.models import TENANT_RE


def add_tenant(conn: psycopg.Connection, *, tenant_id: str, name: str | None = None,
               timezone: str = "Europe/Paris") -> None:
    """Create a tenant; RegistryError when the id is invalid or taken."""
    if not TENANT_RE.match(tenant_id):
        raise RegistryError(
            f"tenant id {tenant_id!r}: lower-case letters, digits, '-' and '_', at most 63 characters"
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RegistryError(f"unknown time zone {timezone!r}") from exc
    try:
        conn.execute(
            "INSERT INTO tenants (id, name, timezone) VALUES (%s, %s, %s)",
            (tenant_id, name or tenant_id, timezone),
        )
    except psycopg.errors.UniqueViolation as exc:
        raise RegistryError(f"tenant {tenant_id!r} already exists") from exc


def list_tenants(conn: psycopg.Connection) -> list[dict[str, str]]:
    """Every tenant, by id."""
    rows = conn.execute("SELECT id, name, timezone FROM tenants ORDER BY id").fetchall()
    return [{"id": r[0], "name": r[1], "timezone": r[2]} for r in rows]


def tenant_exists(conn: psycopg.Connection, tenant_id: str) -> bool:
    """True when the tenant is registered."""
    return conn.execute("SELECT 1 FROM tenants WHERE id = %s", (tenant_id,)).fetchone() is not None
