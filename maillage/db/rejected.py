"""Rejected messages (the `rejected` table, fed from the DLQ) as the API, the CLI and the replay read them."""

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


# --- Synchronous: `maillage dlq list` and the replay -------------------------------------------

def _where(*, tenant: str | None, device_id: str | None, reason: str | None,
           since: datetime | None, until: datetime | None,
           include_replayed: bool) -> tuple[str, list[Any]]:
    """SQL conditions on `rejected` for a selection (every filter optional), and their values."""
    clauses: list[str] = [] if include_replayed else ["replayed_at IS NULL"]
    params: list[Any] = []
    for column, value in (("tenant_id", tenant), ("device_id", device_id), ("reason", reason)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if since is not None:
        clauses.append("received_at >= %s")
        params.append(since)
    if until is not None:
        clauses.append("received_at < %s")
        params.append(until)
    return (" AND ".join(clauses) or "true"), params


def recent_rejected(*, conn: psycopg.Connection, tenant: str | None, device_id: str | None,
                    reason: str | None, since: datetime | None, until: datetime | None,
                    limit: int) -> list[dict[str, Any]]:
    """Rejections newest first (replayed ones too), with the columns of `COLUMNS` but the type."""
    where, params = _where(tenant=tenant, device_id=device_id, reason=reason, since=since,
                           until=until, include_replayed=True)
    keys = COLUMNS[:-1]
    rows = conn.execute(f"SELECT {', '.join(keys)} FROM rejected WHERE {where} "
                        "ORDER BY id DESC LIMIT %s", [*params, limit]).fetchall()
    return [dict(zip(keys, r, strict=True)) for r in rows]


def claim_for_replay(*, conn: psycopg.Connection, tenant: str | None, device_id: str | None,
                     reason: str | None, since: datetime | None, until: datetime | None,
                     include_replayed: bool, after_id: int,
                     limit: int) -> list[tuple[int, str, bytes, datetime, str | None, str]]:
    """(id, topic, payload, received_at, device_id, reason) of the next rows after `after_id`.

    Locked for the caller's transaction (`FOR UPDATE SKIP LOCKED`: two replays never take the
    same row).
    """
    where, params = _where(tenant=tenant, device_id=device_id, reason=reason, since=since,
                           until=until, include_replayed=include_replayed)
    return conn.execute(
        "SELECT id, mqtt_topic, payload, received_at, device_id, reason "
        f"FROM rejected WHERE {where} AND id > %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
        [*params, after_id, limit]).fetchall()


def mark_replayed(*, conn: psycopg.Connection, ids: Sequence[int]) -> None:
    """Note that these rows went through the checks again and were accepted."""
    conn.execute("UPDATE rejected SET replayed_at = now() WHERE id = ANY(%s)", (list(ids),))
