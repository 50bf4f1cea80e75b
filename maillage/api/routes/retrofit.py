"""`GET /v1/savings/retrofit`: what replacing the remaining sodium lamps by LED would save.

Admins and energy managers of the tenant (an all-tenants admin names `?tenant=`). kWh, € and
kg CO2 a year and payback years, in total and per lamp (best payback first: which to replace
first); the arithmetic and the price sources are in `db.lighting_savings.retrofit`.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from maillage.api.deps import PrincipalDep, one_tenant, require_roles
from maillage.db import retrofit as db
from maillage.registry.models import Role

router = APIRouter(prefix="/v1/savings", tags=["savings"],
                   dependencies=[require_roles(Role.ADMIN, Role.ENERGY_MANAGER)])


@router.get("/retrofit")
async def retrofit(
    request: Request, p: PrincipalDep,
    lamp_cost_eur: Annotated[float, Query(ge=0, le=1e6,
                                          description="Cost of one LED lantern, installed (€)")],
    commune: Annotated[str | None, Query(max_length=200,
                                         description="Default: every commune of the tenant")] = None,
    led_power_w: Annotated[float | None, Query(gt=0, le=2000, description=(
        "Power of the LED lantern (W); default 40 % of each sodium lamp's nominal power"))] = None,
    eur_per_kwh: Annotated[float | None, Query(ge=0, le=10, description=(
        "Default: the price the lamps' nights were stored with, else the tariff in force, "
        f"else {db.DEFAULT_EUR_PER_KWH}"))] = None,
    kg_co2_per_kwh: Annotated[float | None, Query(ge=0, le=5, description=(
        "Default: the factor the nights were stored with, else the factor in force, else "
        f"{db.DEFAULT_KG_CO2_PER_KWH} (French mix)"))] = None,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> dict[str, Any]:
    """Retrofit "what if" of the sodium (HPS) lamps: kWh, €, kg CO2 a year, payback years."""
    scope = one_tenant(p, tenant)

    def call() -> dict[str, Any]:
        with request.app.state.sync_pool.connection() as conn:
            return db.retrofit(conn=conn, tenant=scope, commune=commune,
                               lamp_cost_eur=lamp_cost_eur, led_power_w=led_power_w,
                               eur_per_kwh=eur_per_kwh, kg_co2_per_kwh=kg_co2_per_kwh,
                               today=date.today())

    try:
        return await asyncio.to_thread(call)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
