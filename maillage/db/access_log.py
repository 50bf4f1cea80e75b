"""The care access log (`care_access_log`): one row per read of care data."""

from __future__ import annotations

import psycopg


async def insert_care_access(*, conn: psycopg.AsyncConnection, token_id: int, role: str,
                             tenant: str, device_id: str | None, what: str) -> None:
    """Record that a token read care data."""
    await conn.execute(
        "INSERT INTO care_access_log (token_id, role, tenant_id, device_id, what) "
        "VALUES (%s, %s, %s, %s, %s)",
        (token_id, role, tenant, device_id, what),
    )
