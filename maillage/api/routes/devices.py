"""Devices: list, get, create, status — always within the caller's tenant and role."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from maillage.api.access_log import record_care_access
from maillage.api.deps import ConnDep, PrincipalDep, device_types_visible, require_roles
from maillage.api.schemas import DeviceOut, DeviceStatusOut, Page
from maillage.api.security import log_refusal
from maillage.db import devices as db_devices
from maillage.registry.models import DeviceCredentials, DeviceSpec, Role
from maillage.registry.tokens import Principal

router = APIRouter(prefix="/v1/devices", tags=["devices"])


def _device(row: dict[str, Any]) -> DeviceOut:
    d = {k: v for k, v in row.items() if k not in ("tenant_id", "pk")}
    return DeviceOut(tenant=row["tenant_id"], **d)


async def find_device(conn: ConnDep, p: Principal, device_id: str,
                      tenant: str | None = None) -> tuple[DeviceOut, int]:
    """The device visible to `p` (404 otherwise: another tenant's device does not exist for it)."""
    tenant = tenant or p.tenant
    if tenant is not None and not p.can_see_tenant(tenant):
        log_refusal(None, status=404, reason="other_tenant", principal=p,
                    message=f"device {device_id!r} of tenant {tenant!r}")
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device_id!r} not found")
    rows = await db_devices.find_devices(conn=conn, device_id=device_id, tenant=tenant)
    if tenant is None and len(rows) > 1:  # an all-tenants admin: the id must be unambiguous
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"device id {device_id!r} exists in several tenants: pass ?tenant=")
    if not rows or rows[0]["type"] not in device_types_visible(p):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device_id!r} not found")
    return _device(rows[0]), int(rows[0]["pk"])


@router.get("", response_model=Page[DeviceOut])
async def list_devices(
    conn: ConnDep, p: PrincipalDep,
    type: Annotated[str | None, Query(description="Only this device type")] = None,
    commune: str | None = None,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    after: Annotated[str | None, Query(description="Cursor: the last device_id of the previous page")] = None,
) -> Page[DeviceOut]:
    """Devices of the caller's tenant that its role may see, by id, paginated."""
    types = device_types_visible(p)
    if type is not None:
        types = [t for t in types if t == type]
    scope = p.tenant if p.tenant is not None else tenant
    rows = await db_devices.list_devices(conn=conn, types=types, tenant=scope, commune=commune,
                                         after=after, limit=limit + 1)
    items = [_device(r) for r in rows[:limit]]
    if any(t.startswith("care_") for t in types) and p.tenant is not None:
        await record_care_access(conn, p, tenant=p.tenant, device_id=None, device_type=None,
                                 what="list devices")
    return Page(items=items, next=items[-1].device_id if len(rows) > limit else None)


@router.get("/{device_id}", response_model=DeviceOut)
async def get_device(device_id: str, conn: ConnDep, p: PrincipalDep, tenant: str | None = None) -> DeviceOut:
    """One device."""
    dev, _ = await find_device(conn, p, device_id, tenant)
    await record_care_access(conn, p, tenant=dev.tenant, device_id=dev.device_id,
                             device_type=dev.type, what="get device")
    return dev


@router.get("/{device_id}/status", response_model=DeviceStatusOut)
async def device_status(device_id: str, conn: ConnDep, p: PrincipalDep,
                        tenant: str | None = None) -> DeviceStatusOut:
    """Online/offline status and last time data was received."""
    dev, _ = await find_device(conn, p, device_id, tenant)
    await record_care_access(conn, p, tenant=dev.tenant, device_id=dev.device_id,
                             device_type=dev.type, what="device status")
    return DeviceStatusOut(device_id=dev.device_id, status=dev.status, status_at=dev.status_at,
                           last_seen_at=dev.last_seen_at)


@router.post("", status_code=201, response_model=DeviceCredentials,
             dependencies=[require_roles(Role.ADMIN)])
async def create_device(spec: DeviceSpec, request: Request, p: PrincipalDep,
                        tenant: str | None = None) -> DeviceCredentials:
    """Register a device and install its MQTT credentials (admin only; the password is shown once)."""
    target = p.tenant or tenant
    if target is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "pass ?tenant= (all-tenants token)")
    register = request.app.state.register_devices
    creds: list[DeviceCredentials] = await asyncio.to_thread(register, target, [spec])
    return creds[0]
