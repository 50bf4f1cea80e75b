"""Lighting control: adaptive-lighting rules and declared peak windows (demand response).

Admins and energy managers of the tenant. A rule raises a street's or district's lamps to
`level` when one of its presence sensors fires, and sends them back to `night_level` `hold_s`
after the last presence (`processors/control/adaptive.py`). A peak window dims the lamps of the
tenant, a commune or a district to `level` from `start` to `end`, then puts them back on their
schedule; its GET carries the commands and the kW shed measured from the stored readings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from maillage.api.deps import ConnDep, PrincipalDep, one_tenant, require_roles, tenant_scope
from maillage.db import groups
from maillage.db import lighting_rules as db_rules
from maillage.db import peak_windows as db_windows
from maillage.registry.models import Role

router = APIRouter(tags=["lighting"], dependencies=[require_roles(Role.ADMIN, Role.ENERGY_MANAGER)])


class RuleIn(BaseModel):
    """An adaptive rule for one street or district (`district`: `<name>` or `<commune>/<name>`)."""

    model_config = ConfigDict(extra="forbid")
    area: Literal["street", "district"]
    name: str = Field(min_length=1, max_length=200)
    level: float = Field(ge=0, le=100)
    night_level: float = Field(ge=0, le=100)
    hold_s: float = Field(gt=0, le=86400)

    @model_validator(mode="after")
    def _raises(self) -> RuleIn:
        if self.level <= self.night_level:
            raise ValueError("level must be above night_level (the rule raises the lamps)")
        return self


class RuleOut(BaseModel):
    id: int
    tenant: str
    area: str
    name: str
    level: float
    night_level: float
    hold_s: float
    enabled: bool
    created_by: str
    created_at: datetime
    raised_until: datetime | None
    raised_count: int


class RulePage(BaseModel):
    items: list[RuleOut]


def _rule(row: dict[str, Any]) -> RuleOut:
    return RuleOut(tenant=row["tenant_id"], **{k: row[k] for k in RuleOut.model_fields if k != "tenant"})


@router.get("/v1/lighting/rules", response_model=RulePage)
async def list_rules(conn: ConnDep, p: PrincipalDep,
                     tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
                     ) -> RulePage:
    """The tenant's adaptive-lighting rules."""
    rows = await db_rules.list_rules(conn=conn, tenant=tenant_scope(p, tenant))
    return RulePage(items=[_rule(r) for r in rows])


async def _lit_area(conn: ConnDep, tenant: str, area: str, name: str | None) -> str:
    """The group of an area with streetlights (404 when it has none)."""
    group = groups.area_group(area, name)
    if not await groups.members(conn=conn, tenant=tenant, group_id=group):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no streetlight in {group!r}")
    return group


@router.post("/v1/lighting/rules", response_model=RuleOut, status_code=status.HTTP_201_CREATED)
async def create_rule(body: RuleIn, conn: ConnDep, p: PrincipalDep,
                      tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
                      ) -> RuleOut:
    """A rule for an area with streetlights (404 when it has none, 409 when it has a rule)."""
    scope = one_tenant(p, tenant)
    group = await _lit_area(conn, scope, body.area, body.name)
    row = await db_rules.create_rule(conn=conn, tenant=scope, area=body.area, name=body.name,
                                     level=body.level, night_level=body.night_level,
                                     hold_s=body.hold_s, created_by=p.actor)
    if row is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{group!r} already has a rule")
    return _rule(row)


@router.delete("/v1/lighting/rules/{rule_id:int}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: int, conn: ConnDep, p: PrincipalDep) -> None:
    """Delete a rule (the lamps keep their current level)."""
    if not await db_rules.delete_rule(conn=conn, tenant=p.tenant, rule_id=rule_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"rule {rule_id} not found")


class WindowIn(BaseModel):
    """A peak window over the tenant, a commune or a district (`name` except for `tenant`)."""

    model_config = ConfigDict(extra="forbid")
    area: Literal["tenant", "commune", "district"]
    name: str | None = Field(default=None, min_length=1, max_length=200)
    start: datetime
    end: datetime
    level: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _coherent(self) -> WindowIn:
        if (self.area == "tenant") != (self.name is None):
            raise ValueError("name: required for a commune or a district, none for the tenant")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone (e.g. 2026-12-06T18:00:00+01:00)")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Shed(BaseModel):
    """The lamps' load before and during the window (kW) and the difference."""

    before_kw: float
    during_kw: float
    shed_kw: float
    lamps: int
    before: dict[str, datetime]
    during: dict[str, datetime]


class WindowOut(BaseModel):
    id: int
    tenant: str
    area: str
    name: str | None
    start: datetime
    end: datetime
    level: float
    created_by: str
    created_at: datetime
    state: Literal["scheduled", "active", "over"]
    dim_command_id: int | None
    dim_state: str | None
    restore_command_id: int | None
    restore_state: str | None
    measured: Shed | None = None


class WindowPage(BaseModel):
    items: list[WindowOut]


def _window(row: dict[str, Any], measured: dict[str, Any] | None, now: datetime) -> WindowOut:
    state: Literal["scheduled", "active", "over"] = (
        "scheduled" if now < row["start_ts"] else "active" if now < row["end_ts"] else "over")
    return WindowOut(
        id=row["id"], tenant=row["tenant_id"], area=row["area"], name=row["name"],
        start=row["start_ts"], end=row["end_ts"], level=row["level"],
        created_by=row["created_by"], created_at=row["created_at"], state=state,
        dim_command_id=row["dim_command_id"], dim_state=row["dim_state"],
        restore_command_id=row["restore_command_id"], restore_state=row["restore_state"],
        measured=Shed(**measured) if measured else None)


@router.post("/v1/peak-windows", response_model=WindowOut, status_code=status.HTTP_201_CREATED)
async def create_window(body: WindowIn, conn: ConnDep, p: PrincipalDep,
                        tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
                        ) -> WindowOut:
    """Declare a peak window (404 when its area has no streetlight)."""
    scope = one_tenant(p, tenant)
    await _lit_area(conn, scope, body.area, body.name)
    row = await db_windows.create_window(conn=conn, tenant=scope, area=body.area, name=body.name,
                                         start=body.start, end=body.end, level=body.level,
                                         created_by=p.actor)
    return _window(row, None, datetime.now(UTC))


@router.get("/v1/peak-windows", response_model=WindowPage)
async def list_windows(conn: ConnDep, p: PrincipalDep,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100,
                       tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
                       ) -> WindowPage:
    """Peak windows, latest first (the shed is on each window's own GET)."""
    now = datetime.now(UTC)
    rows = await db_windows.list_windows(conn=conn, tenant=tenant_scope(p, tenant), limit=limit)
    return WindowPage(items=[_window(r, None, now) for r in rows])


@router.get("/v1/peak-windows/{window_id:int}", response_model=WindowOut)
async def get_window(window_id: int, conn: ConnDep, p: PrincipalDep) -> WindowOut:
    """One window with `measured`: the kW shed, from the lamps' stored `lamp_power_w`."""
    row = await db_windows.get_window(conn=conn, tenant=p.tenant, window_id=window_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"peak window {window_id} not found")
    now = datetime.now(UTC)
    devices = await groups.members(conn=conn, tenant=row["tenant_id"],
                                   group_id=groups.area_group(row["area"], row["name"]))
    measured = await db_windows.measured_shed(conn=conn, tenant=row["tenant_id"], devices=devices,
                                              window=row, now=now)
    return _window(row, measured, now)
