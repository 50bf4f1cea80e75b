"""Rejected messages (the `rejected` table, fed from the DLQ) as the API reads them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

COLUMNS = ("id", "received_at", "mqtt_topic", "tenant_id", "device_id", "reason", "detail",
           "payload", "replayed_at", "device_type")


async def list_rejected(*, conn: psycopg.AsyncConnection, tenant: str | None, types: Sequence[str],
                        unknown_devices: bool, device_id: str | None, reason: str | None,
                        start: datetime | None, end: datetime | None, before_id: int | None,
                        limit: int) -> list[dict[str, Any]]:
    """Rejections newest first, of devices of `types` (and of unregistered senders if `unknown_devices`).

    `tenant` None means every tenant; `before_id` is the paging cursor (ids below it).
    """
    cur = await conn.execute(
        "SELECT r.id, r.received_at, r.mqtt_topic, r.tenant_id, r.device_id, r.reason, r.detail, "
        "r.payload, r.replayed_at, d.type FROM rejected r "
        "LEFT JOIN devices d ON d.tenant_id = r.tenant_id AND d.device_id = r.device_id "
        "WHERE (%(scope)s::text IS NULL OR r.tenant_id = %(scope)s) "
        "AND (d.type = ANY(%(types)s) OR (d.type IS NULL AND %(admin)s)) "
        "AND (%(device)s::text IS NULL OR r.device_id = %(device)s) "
        "AND (%(reason)s::text IS NULL OR r.reason = %(reason)s) "
        "AND (%(from)s::timestamptz IS NULL OR r.received_at >= %(from)s) "
        "AND (%(to)s::timestamptz IS NULL OR r.received_at < %(to)s) "
        "AND (%(after)s::bigint IS NULL OR r.id < %(after)s) "
        "ORDER BY r.id DESC LIMIT %(limit)s",
        {"scope": tenant, "types": list(types), "admin": unknown_devices, "device": device_id,
         "reason": reason, "from": start, "to": end, "after": before_id, "limit": limit},
    )
    return [dict(zip(COLUMNS, r, strict=True)) for r in await cur.fetchall()]
