"""Adaptive-lighting rules: presence on a street or district raises its lamps for a while.

The API creates, lists and deletes rules; the control processor finds the rules a presence
device belongs to, raises them (`raised_until`), and lowers those whose time has come.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

COLUMNS = ("id, tenant_id, area, name, level, night_level, hold_s, enabled, created_by, "
           "created_at, raised_until, raised_count")


async def create_rule(*, conn: psycopg.AsyncConnection, tenant: str, area: str, name: str,
                      level: float, night_level: float, hold_s: float,
                      created_by: str) -> dict[str, Any] | None:
    """A new rule; None when the area already has one."""
    cur = await conn.cursor(row_factory=dict_row).execute(
        "INSERT INTO lighting_rules (tenant_id, area, name, level, night_level, hold_s, created_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, area, name) DO NOTHING "
        f"RETURNING {COLUMNS}", (tenant, area, name, level, night_level, hold_s, created_by))
    return await cur.fetchone()


async def list_rules(*, conn: psycopg.AsyncConnection, tenant: str | None) -> list[dict[str, Any]]:
    """The rules of a tenant (None: every tenant), by id."""
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"SELECT {COLUMNS} FROM lighting_rules WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s) "
        "ORDER BY id", {"t": tenant})
    return list(await cur.fetchall())


async def delete_rule(*, conn: psycopg.AsyncConnection, tenant: str | None, rule_id: int) -> bool:
    """Delete a rule of the tenant; False when there is none."""
    cur = await conn.execute(
        "DELETE FROM lighting_rules WHERE id = %(id)s AND (%(t)s::text IS NULL OR tenant_id = %(t)s)",
        {"id": rule_id, "t": tenant})
    return cur.rowcount > 0


# -- the control processor (synchronous, inside its transactions) ----------------------------------

def rules_for_presence(*, conn: psycopg.Connection, tenant: str, device_id: str) -> list[dict[str, Any]]:
    """Enabled rules covering a presence sensor's street or district (none for other devices)."""
    cur = conn.cursor(row_factory=dict_row).execute(
        f"SELECT r.{COLUMNS.replace(', ', ', r.')} FROM lighting_rules r JOIN devices d "
        "ON d.tenant_id = r.tenant_id AND d.device_id = %(d)s AND d.type = 'presence' "
        "WHERE r.tenant_id = %(t)s AND r.enabled AND ("
        " (r.area = 'street' AND r.name = coalesce(d.meta->>'street', d.site)) OR "
        " (r.area = 'district' AND (r.name = d.district OR r.name = d.commune || '/' || d.district)))",
        {"t": tenant, "d": device_id})
    return list(cur.fetchall())


def raise_rule(*, conn: psycopg.Connection, rule_id: int, hold_s: float) -> bool:
    """Keep a rule raised for `hold_s` from now; True when it was at its night level before."""
    row = conn.execute(
        "WITH old AS (SELECT id, raised_until FROM lighting_rules WHERE id = %(id)s FOR UPDATE) "
        "UPDATE lighting_rules r SET raised_until = greatest(old.raised_until, "
        "  now() + make_interval(secs => %(hold)s)), raised_count = r.raised_count + 1 "
        "FROM old WHERE r.id = old.id RETURNING old.raised_until IS NULL",
        {"id": rule_id, "hold": hold_s}).fetchone()
    return bool(row and row[0])


def take_due_lowering(*, conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Rules whose hold has passed, set back to their night level (locked, SKIP LOCKED)."""
    cur = conn.cursor(row_factory=dict_row).execute(
        "UPDATE lighting_rules SET raised_until = NULL WHERE id IN ("
        " SELECT id FROM lighting_rules WHERE raised_until <= now() FOR UPDATE SKIP LOCKED) "
        f"RETURNING {COLUMNS}")
    return list(cur.fetchall())


# -- the CLI (synchronous) ------------------------------------------------------------------------

def create_rule_sync(*, conn: psycopg.Connection, tenant: str, area: str, name: str, level: float,
                     night_level: float, hold_s: float, created_by: str) -> dict[str, Any] | None:
    """`create_rule` for the CLI."""
    cur = conn.cursor(row_factory=dict_row).execute(
        "INSERT INTO lighting_rules (tenant_id, area, name, level, night_level, hold_s, created_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, area, name) DO NOTHING "
        f"RETURNING {COLUMNS}", (tenant, area, name, level, night_level, hold_s, created_by))
    return cur.fetchone()


def list_rules_sync(*, conn: psycopg.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """`list_rules` for the CLI."""
    cur = conn.cursor(row_factory=dict_row).execute(
        f"SELECT {COLUMNS} FROM lighting_rules WHERE (%(t)s::text IS NULL OR tenant_id = %(t)s) "
        "ORDER BY id", {"t": tenant})
    return list(cur.fetchall())


def delete_rule_sync(*, conn: psycopg.Connection, rule_id: int) -> bool:
    """Delete a rule by id; False when there is none."""
    return conn.execute("DELETE FROM lighting_rules WHERE id = %s", (rule_id,)).rowcount > 0
