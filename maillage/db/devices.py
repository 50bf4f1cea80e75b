"""Devices as the API reads them: one device by id, and pages of a tenant's devices.

The registry (`maillage.registry.devices`) writes these rows; this module only reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

COLUMNS = ("device_id", "tenant_id", "type", "site", "commune", "district", "building", "dwelling",
           "lat", "lon", "meta", "expected_interval_s", "installed_at", "created_at", "status",
           "status_at", "last_seen_at", "pk")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM devices"


def _rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


async def find_devices(*, conn: psycopg.AsyncConnection, device_id: str,
                       tenant: str | None) -> list[dict[str, Any]]:
    """The device `device_id` of `tenant`; with `tenant` None, up to two tenants' devices of that id."""
    if tenant is None:
        cur = await conn.execute(f"{_SELECT} WHERE device_id = %s LIMIT 2", (device_id,))
    else:
        cur = await conn.execute(f"{_SELECT} WHERE tenant_id = %s AND device_id = %s",
                                 (tenant, device_id))
    return _rows(await cur.fetchall())


async def list_devices(*, conn: psycopg.AsyncConnection, types: Sequence[str], tenant: str | None,
                       commune: str | None, after: str | None, limit: int) -> list[dict[str, Any]]:
    """Devices of these types by id (of one tenant unless None, one commune unless None), after `after`."""
    cur = await conn.execute(
        f"{_SELECT} WHERE type = ANY(%s) "
        "AND (%s::text IS NULL OR tenant_id = %s) AND (%s::text IS NULL OR commune = %s) "
        "AND (%s::text IS NULL OR device_id > %s) ORDER BY device_id LIMIT %s",
        (list(types), tenant, tenant, commune, commune, after, after, limit),
    )
    return _rows(await cur.fetchall())
