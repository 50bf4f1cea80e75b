"""`GET /v1/peaks`: the load curve of a meter, building, site, district or commune, its peaks
over the subscribed or contracted power, when they happen, and what to do (dim, shift).

Admins and energy managers of the tenant (an all-tenants admin names `?tenant=`); care devices
are never part of a curve. The computation is `db.peaks.peaks` (rollups, no processor).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status

from maillage.api.deps import PrincipalDep, one_tenant, require_roles, window
from maillage.db import peaks as db
from maillage.registry.models import Role

router = APIRouter(prefix="/v1/peaks", tags=["peaks"],
                   dependencies=[require_roles(Role.ADMIN, Role.ENERGY_MANAGER)])


@router.get("")
async def peaks(
    request: Request, p: PrincipalDep,
    area: Annotated[Literal["meter", "building", "site", "district", "commune"], Query(
        description="meter: one meter by device id; else the area's meters and cabinets")],
    name: Annotated[str, Query(min_length=1, max_length=200)],
    from_: Annotated[datetime | None, Query(alias="from", description="Default: 7 days before 'to'")] = None,
    to: Annotated[datetime | None, Query(description="Default: now")] = None,
    contracted_va: Annotated[float | None, Query(gt=0, le=1e8, description=(
        "Contracted power; default the sum of the meters' subscribed powers"))] = None,
    power_factor: Annotated[float, Query(gt=0, le=1, description="W per VA")] = 1.0,
    curve: Annotated[bool, Query(description="Include the 15-minute curve")] = True,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> dict[str, Any]:
    """Load curve (15-minute mean power), peaks over the limit and recommendations."""
    scope = one_tenant(p, tenant)
    start, end = window(from_, to)
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=7)

    def call() -> dict[str, Any]:
        with request.app.state.sync_pool.connection() as conn:
            return db.peaks(conn, tenant=scope, area=area, name=name, start=start, end=end,
                            contracted_va=contracted_va, power_factor=power_factor,
                            curve_points=curve)

    try:
        return await asyncio.to_thread(call)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
