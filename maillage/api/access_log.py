"""The access log of care data: every read of a care device's data is recorded (CNIL)."""

from __future__ import annotations

import psycopg

from maillage.db.access_log import insert_care_access
from maillage.registry.models import DeviceType
from maillage.registry.tokens import Principal


async def record_care_access(conn: psycopg.AsyncConnection, p: Principal, *, tenant: str,
                             device_id: str | None, device_type: str | None, what: str) -> None:
    """Write one line when care data is read (no-op for other device types)."""
    if device_type is not None and not DeviceType(device_type).is_care:
        return
    await insert_care_access(conn=conn, token_id=p.token_id, role=p.role.value, tenant=tenant,
                             device_id=device_id, what=what)
