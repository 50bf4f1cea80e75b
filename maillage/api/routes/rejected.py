"""Rejected messages (the DLQ): what a device sent that was refused, and why.

Scoping: a token sees its tenant's rejections of the devices its role may see (energy managers no
care devices, care coordinators only care devices, reads of care payloads are access-logged).
Rejections of unregistered devices (`unknown_device`) carry no device type, so only admins see
them: the payload of an unknown sender might be anybody's data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from maillage.api.access_log import record_care_access
from maillage.api.deps import ConnDep, PrincipalDep, device_types_visible, require_roles
from maillage.ingest.replay import payload_view
from maillage.registry.models import Role

router = APIRouter(prefix="/v1/rejected", tags=["rejected"])


@router.get("", dependencies=[require_roles(Role.ADMIN, Role.ENERGY_MANAGER,
                                            Role.CARE_COORDINATOR)])
async def list_rejected(
    conn: ConnDep, p: PrincipalDep,
    device_id: Annotated[str | None, Query(alias="device", description="Only this device")] = None,
    reason: Annotated[str | None, Query(description="Only this reason, e.g. bad_checksum")] = None,
    from_: Annotated[datetime | None, Query(alias="from", description="Received at or after")] = None,
    to: Annotated[datetime | None, Query(description="Received before")] = None,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int | None, Query(description="Cursor: `next` of the previous page")] = None,
) -> dict[str, Any]:
    """`{"items": [...], "next"}`, newest first; `payload` is text when UTF-8, else base64."""
    for name, value in (("from", from_), ("to", to)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                                f"{name}: give a time zone (e.g. 2026-11-23T00:00:00Z)")
    if tenant is not None and not p.can_see_tenant(tenant):
        return {"items": [], "next": None}
    scope = p.tenant if p.tenant is not None else tenant
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
        {"scope": scope, "types": device_types_visible(p), "admin": p.role is Role.ADMIN,
         "device": device_id, "reason": reason, "from": from_, "to": to, "after": after,
         "limit": limit + 1},
    )
    rows = await cur.fetchall()
    items = []
    care = False
    for rid, rx, topic, t, d, r, detail, payload, replayed, dtype in rows[:limit]:
        text, encoding = payload_view(bytes(payload))
        care = care or (dtype or "").startswith("care_")
        items.append({"id": rid, "received_at": rx, "topic": topic, "tenant": t, "device_id": d,
                      "device_type": dtype, "reason": r, "detail": detail, "payload": text,
                      "payload_encoding": encoding, "size": len(payload), "replayed_at": replayed})
    if care:
        await record_care_access(conn, p, tenant=scope or "*", device_id=device_id,
                                 device_type=None, what="rejected messages")
    return {"items": items, "next": str(items[-1]["id"]) if len(rows) > limit else None}
