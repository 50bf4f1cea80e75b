"""Télégestion: commands to a device or a group of lamps, and their audited list.

Only admins and energy managers of the tenant command; care devices never (they are "not
found" here, whatever the role). A command is recorded with who sent it (token id and role),
then relayed to `maillage.commands` by the commands processor (transactional outbox, see
`db/commands.py`); the answer is `202 {id, state, devices}` at once, the device's ack comes later.
Group ids: `cabinet:<id>`, `street:<name>`, `district:<name>` or `district:<commune>/<name>`,
`commune:<name>`, `all` (`db/groups.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from maillage.api.deps import ConnDep, PrincipalDep, one_tenant, require_roles, tenant_scope, window
from maillage.api.routes.devices import find_device
from maillage.db import commands as db_commands
from maillage.db import groups
from maillage.registry.models import DeviceType, Role
from maillage.registry.tokens import Principal

ENERGY = require_roles(Role.ADMIN, Role.ENERGY_MANAGER)
router = APIRouter(tags=["commands"], dependencies=[ENERGY])
State = Literal["pending", "sent", "done", "failed"]
MAX_PAGE = 500


class ScheduleStep(BaseModel):
    """From local time `at` (HH:MM), the level in %."""

    model_config = ConfigDict(extra="forbid")
    at: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    level: float = Field(ge=0, le=100)


class CommandIn(BaseModel):
    """`on`, `off`, `dim` (with `level`), `schedule` (with `steps`), `auto` (back to the
    device's own schedule); `duration_s`: the order lapses after this (then `auto`)."""

    model_config = ConfigDict(extra="forbid")
    cmd: Literal["on", "off", "dim", "schedule", "auto"]
    level: float | None = Field(default=None, ge=0, le=100)
    duration_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    steps: list[ScheduleStep] | None = Field(default=None, min_length=1, max_length=48)

    @model_validator(mode="after")
    def _coherent(self) -> CommandIn:
        if self.cmd == "dim" and self.level is None:
            raise ValueError("dim needs a level (0-100)")
        if self.cmd != "dim" and self.level is not None:
            raise ValueError(f"{self.cmd} takes no level (use dim)")
        if (self.cmd == "schedule") != (self.steps is not None):
            raise ValueError("steps go with schedule, and schedule needs steps")
        return self

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        if self.steps is not None:
            out["steps"] = [s.model_dump() for s in self.steps]
        return out


class Accepted(BaseModel):
    """A recorded command: its id and state (`pending` until the processor sends it)."""

    id: int
    state: State
    devices: int


class TargetOut(BaseModel):
    """One device's delivery of a command."""

    device_id: str
    state: State
    attempts: int
    sent_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None


class CommandOut(BaseModel):
    """A command with its audit: who (token id, role, or the rule or peak window), when, what, result."""

    id: int
    tenant: str
    target: str
    cmd: str
    level: float | None
    params: dict[str, Any]
    issued_by: str
    token_id: int | None
    role: str | None
    state: State
    devices: int
    done: int
    failed: int
    created_at: datetime
    finished_at: datetime | None
    targets: list[TargetOut] | None = None


class CommandPage(BaseModel):
    items: list[CommandOut]
    next: str | None = None


def _out(row: dict[str, Any]) -> CommandOut:
    targets = row.get("targets")
    return CommandOut(
        id=row["id"], tenant=row["tenant_id"], target=row["target"], cmd=row["cmd"],
        level=row["level"], params=row["params"], issued_by=row["issued_by"],
        token_id=row["token_id"], role=row["role"], state=row["state"], devices=row["devices"],
        done=row["done"], failed=row["failed"], created_at=row["created_at"],
        finished_at=row["finished_at"],
        targets=None if targets is None else [TargetOut(**{k: t[k] for k in TargetOut.model_fields})
                                              for t in targets])


async def _record(conn: ConnDep, p: Principal, tenant: str, target: str, body: CommandIn,
                  devices: list[str]) -> Accepted:
    row = await db_commands.create_command(
        conn=conn, tenant=tenant, target=target, cmd=body.cmd, level=body.level,
        params=body.params(), devices=devices, issued_by=f"token:{p.token_id}",
        token_id=p.token_id, role=p.role.value)
    return Accepted(id=row["id"], state=row["state"], devices=len(devices))


@router.post("/v1/devices/{device_id}/commands", response_model=Accepted,
             status_code=status.HTTP_202_ACCEPTED)
async def command_device(device_id: str, body: CommandIn, conn: ConnDep, p: PrincipalDep,
                         tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
                         ) -> Accepted:
    """Command one device of the tenant (a lamp, a cabinet: every lamp it feeds)."""
    scope = one_tenant(p, tenant)
    dev, _ = await find_device(conn, p, device_id, scope)
    if DeviceType(dev.type).is_care:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device_id!r} not found")
    return await _record(conn, p, scope, f"device:{device_id}", body, [device_id])


@router.post("/v1/groups/{group_id}/commands", response_model=Accepted,
             status_code=status.HTTP_202_ACCEPTED)
async def command_group(group_id: str, body: CommandIn, conn: ConnDep, p: PrincipalDep,
                        tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
                        ) -> Accepted:
    """Command every streetlight of a group (one command, one delivery per lamp)."""
    scope = one_tenant(p, tenant)
    try:
        devices = await groups.members(conn=conn, tenant=scope, group_id=group_id)
    except groups.GroupError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    if not devices:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"group {group_id!r} not found (no streetlight in it)")
    return await _record(conn, p, scope, group_id, body, devices)


@router.get("/v1/commands", response_model=CommandPage)
async def list_commands(
    conn: ConnDep, p: PrincipalDep,
    state: Annotated[State | None, Query(description="Only commands in this state")] = None,
    target: Annotated[str | None, Query(description="device:<id> or a group id")] = None,
    device: Annotated[str | None, Query(description="Commands that reached this device")] = None,
    issued_by: Annotated[str | None, Query(description="token:<id>, rule:<id>, peak_window:<id>")] = None,
    from_: Annotated[datetime | None, Query(alias="from", description="Created at or after")] = None,
    to: Annotated[datetime | None, Query(description="Created before")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[str | None, Query(description="Cursor from the previous page's `next`")] = None,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> CommandPage:
    """`{"items": [...], "next": cursor|null}`, newest first."""
    start, end = window(from_, to)
    if after is not None and not after.isdigit():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "after: not a cursor from 'next'")
    rows = await db_commands.list_commands(
        conn=conn, tenant=tenant_scope(p, tenant), state=state, target=target, device=device,
        issued_by=issued_by, start=start, end=end, before_id=int(after) if after else None,
        limit=limit + 1)
    page = rows[:limit]
    nxt = str(page[-1]["id"]) if len(rows) > limit else None
    return CommandPage(items=[_out(r) for r in page], next=nxt)


@router.get("/v1/commands/{command_id:int}", response_model=CommandOut)
async def get_command(command_id: int, conn: ConnDep, p: PrincipalDep) -> CommandOut:
    """One command with each device's delivery (404 outside the caller's tenant)."""
    row = await db_commands.get_command(conn=conn, tenant=p.tenant, command_id=command_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"command {command_id} not found")
    return _out(row)
