"""Devices as the API, the gateway, the CLI and the simulators read them.

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


# --- Synchronous reads: the gateway's registry cache, the CLI, the simulators -------------------

CHANGES_CHANNEL = "maillage_devices"
"""NOTIFY channel of registry changes (migration 0005); the payload is `tenant/device_id`."""
CLOCK_FLOOR = "2010-01-01T00:00:00Z"
"""Measurements before this are a device's unset clock (1970, 2000-01-01 after a reset), not data."""
# The last column is the relay a device is registered under (a care sensor's hub, a lamp's
# cabinet, or a generic `relay`): the only device allowed to speak for it.
_INGEST = ("SELECT tenant_id, device_id, pk, type, "
           f"COALESCE(installed_at, '{CLOCK_FLOOR}'::timestamptz), "
           "COALESCE(meta->>'hub', meta->>'cabinet', meta->>'relay') FROM devices")


def listen_for_changes(*, conn: psycopg.Connection) -> None:
    """Subscribe this (autocommit) connection to registry changes on `CHANGES_CHANNEL`."""
    conn.execute(f"LISTEN {CHANGES_CHANNEL}")


def deliver_notifications(*, conn: psycopg.Connection) -> None:
    """One round trip: it delivers every notification the server sent before it."""
    conn.execute("SELECT 1")


def ingest_view(*, conn: psycopg.Connection, tenant: str | None = None,
                device_id: str | None = None) -> list[tuple[Any, ...]]:
    """(tenant, device_id, pk, type, accepted since, parent relay) of every device, or of one."""
    if tenant is None or device_id is None:
        return conn.execute(_INGEST).fetchall()
    return conn.execute(_INGEST + " WHERE tenant_id = %s AND device_id = %s",
                        (tenant, device_id)).fetchall()


def tenant_devices(*, conn: psycopg.Connection, tenant: str) -> list[dict[str, Any]]:
    """A tenant's devices by id: `{device_id, type, commune, status, last_seen_at}`."""
    keys = ("device_id", "type", "commune", "status", "last_seen_at")
    rows = conn.execute(f"SELECT {', '.join(keys)} FROM devices WHERE tenant_id = %s "
                        "ORDER BY device_id", (tenant,)).fetchall()
    return [dict(zip(keys, r, strict=True)) for r in rows]


def registered_ids(*, conn: psycopg.Connection, tenant: str, device_ids: Sequence[str]) -> set[str]:
    """Which of these device ids the tenant has registered."""
    rows = conn.execute("SELECT device_id FROM devices WHERE tenant_id = %s AND device_id = ANY(%s)",
                        (tenant, list(device_ids))).fetchall()
    return {r[0] for r in rows}
