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
from maillage.db import rejected as db_rejected
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
    rows = await db_rejected.list_rejected(
        conn=conn, tenant=scope, types=device_types_visible(p), unknown_devices=p.role is Role.ADMIN,
        device_id=device_id, reason=reason, start=from_, end=to, before_id=after, limit=limit + 1)
    items = []
    care = False
    for row in rows[:limit]:
        payload = bytes(row["payload"])
        text, encoding = payload_view(payload)
        dtype = row["device_type"]
        care = care or (dtype or "").startswith("care_")
        items.append({"id": row["id"], "received_at": row["received_at"], "topic": row["mqtt_topic"],
                      "tenant": row["tenant_id"], "device_id": row["device_id"],
                      "device_type": dtype, "reason": row["reason"], "detail": row["detail"],
                      "payload": text, "payload_encoding": encoding, "size": len(payload),
                      "replayed_at": row["replayed_at"]})
    if care:
        await record_care_access(conn, p, tenant=scope or "*", device_id=device_id,
                                 device_type=None, what="rejected messages")
    return {"items": items, "next": str(items[-1]["id"]) if len(rows) > limit else None}
