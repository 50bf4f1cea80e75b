"""The access log of care data: every read of a care device's data is recorded (CNIL)."""

from __future__ import annotations

import psycopg

from maillage.registry.models import DeviceType
from maillage.registry.tokens import Principal


async def record_care_access(conn: psycopg.AsyncConnection, p: Principal, *, tenant: str,
                             device_id: str | None, device_type: str | None, what: str) -> None:
    """Write one line when care data is read (no-op for other device types)."""
    if device_type is not None and not DeviceType(device_type).is_care:
        return
    await conn.execute(
        "INSERT INTO care_access_log (token_id, role, tenant_id, device_id, what) "
        "VALUES (%s, %s, %s, %s, %s)",
        (p.token_id, p.role.value, tenant, device_id, what),
    )
