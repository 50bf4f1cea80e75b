"""Open data exports under `/v1/opendata/…`: public, non-personal data with its licence.

Who may read: `opendata`, `energy_manager` and `admin` tokens (an all-tenants admin names the
tenant); without a token, only tenants that opted in (`maillage opendata publish --tenant T`),
named with `tenant=`. Care coordinators get 403: this is not their data. Each export is JSON
(default), CSV (`format=csv`) or, for the streetlight inventory, GeoJSON (`format=geojson`); what
is published and the statistical-secrecy rule are in docs/opendata.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from maillage.api.deps import ConnDep, one_tenant
from maillage.db import opendata as db_opendata
from maillage.opendata import exports
from maillage.registry.models import Role
from maillage.registry.tokens import TokenRefused, authenticate

router = APIRouter(prefix="/v1/opendata", tags=["opendata"])

READER_ROLES = (Role.ADMIN, Role.ENERGY_MANAGER, Role.OPENDATA)
_bearer = HTTPBearer(auto_error=False)
MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"
Format = Literal["json", "csv", "geojson"]


async def opendata_tenant(conn: psycopg.AsyncConnection,
                          creds: HTTPAuthorizationCredentials | None, tenant: str | None) -> str:
    """The tenant whose open data the caller reads (401, 403, 404 or 422 otherwise)."""
    if creds is None:
        if tenant is not None and await db_opendata.tenant_publishes(conn=conn, tenant=tenant):
            return tenant
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "missing bearer token (without one, name with 'tenant' a tenant that "
                            "publishes its open data)", headers={"WWW-Authenticate": "Bearer"})
    try:
        p = await authenticate(conn=conn, token=creds.credentials)
    except TokenRefused as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc),
                            headers={"WWW-Authenticate": "Bearer"}) from exc
    if p.role not in READER_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {p.role.value} may not do this")
    scope = one_tenant(p, tenant)
    if p.tenant is None and await db_opendata.tenant_publishes(conn=conn, tenant=scope) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {scope!r} not found")
    return scope


async def _tenant(conn: ConnDep,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                  tenant: Annotated[str | None, Query(
                      description="The publishing tenant (required without a token and for "
                                  "all-tenants admins)")] = None) -> str:
    return await opendata_tenant(conn, creds, tenant)


TenantDep = Annotated[str, Depends(_tenant)]


def min_households(request: Request) -> int:
    """The statistical-secrecy threshold this API was started with."""
    value: int = getattr(request.app.state, "opendata_min_households",
                         exports.DEFAULT_MIN_HOUSEHOLDS)
    return value


def _respond(dataset: exports.Dataset, tenant: str, items: list[dict[str, Any]], fmt: Format,
             **extra: Any) -> Response:
    headers = {"Link": f'<{exports.LICENCE["url"]}>; rel="license"'}
    if fmt == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{tenant}-{dataset.name}.csv"'
        return Response(exports.as_csv(dataset, items), media_type="text/csv; charset=utf-8",
                        headers=headers)
    if fmt == "geojson":
        if not dataset.geo:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                "format: geojson is only for located data; use json or csv")
        return JSONResponse(exports.as_geojson(dataset, tenant, items),
                            media_type="application/geo+json", headers=headers)
    return JSONResponse(exports.as_json(dataset, tenant, items, **extra), headers=headers)


FormatQuery = Annotated[Format, Query(description="json (default), csv, or geojson (inventory)")]
CommuneQuery = Annotated[str | None, Query(description="Only this commune")]
FromQuery = Annotated[str | None, Query(alias="from", pattern=MONTH,
                                        description="First month, YYYY-MM (local time)")]
ToQuery = Annotated[str | None, Query(pattern=MONTH, description="Last month, YYYY-MM")]


@router.get("")
async def catalogue(tenant: TenantDep) -> dict[str, Any]:
    """The datasets this tenant publishes, their formats and licence."""
    return {"publisher": tenant, "licence": exports.LICENCE, "items": [
        {"dataset": d.name, "title": d.title, "description": d.description,
         "url": f"/v1/opendata/{d.name}",
         "formats": ["json", "csv", "geojson"] if d.geo else ["json", "csv"]}
        for d in exports.DATASETS.values()]}


async def _monthly(name: str, dataset: db_opendata.Dataset, request: Request,
                   conn: psycopg.AsyncConnection, tenant: str, commune: str | None,
                   start: str | None, end: str | None, fmt: Format) -> Response:
    if start and end and end < start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "'to' must not be before 'from'")
    threshold = min_households(request)
    rows = await db_opendata.monthly_consumption(conn=conn, dataset=dataset, tenant=tenant,
                                                 commune=commune, start=start, end=end,
                                                 min_households=threshold)
    extra = {"min_households": threshold} if dataset == "residential" else {}
    return _respond(exports.DATASETS[name], tenant, exports.monthly_items(name, rows), fmt, **extra)


@router.get("/lighting-consumption")
async def lighting_consumption(request: Request, conn: ConnDep, tenant: TenantDep,
                               commune: CommuneQuery = None, from_: FromQuery = None,
                               to: ToQuery = None, format: FormatQuery = "json") -> Response:
    """kWh of the public lighting per commune and month."""
    return await _monthly("lighting-consumption", "lighting", request, conn, tenant, commune,
                          from_, to, format)


@router.get("/public-buildings-consumption")
async def public_buildings_consumption(request: Request, conn: ConnDep, tenant: TenantDep,
                                       commune: CommuneQuery = None, from_: FromQuery = None,
                                       to: ToQuery = None,
                                       format: FormatQuery = "json") -> Response:
    """kWh of the public buildings' meters (`--meta public_building=true`) per commune and month."""
    return await _monthly("public-buildings-consumption", "public_buildings", request, conn,
                          tenant, commune, from_, to, format)


@router.get("/residential-consumption")
async def residential_consumption(request: Request, conn: ConnDep, tenant: TenantDep,
                                  commune: CommuneQuery = None, from_: FromQuery = None,
                                  to: ToQuery = None, format: FormatQuery = "json") -> Response:
    """kWh of the residential meters per commune and month, only where at least
    `min_households` meters had data (statistical secrecy)."""
    return await _monthly("residential-consumption", "residential", request, conn, tenant,
                          commune, from_, to, format)


@router.get("/lighting-savings")
async def lighting_savings(conn: ConnDep, tenant: TenantDep, commune: CommuneQuery = None,
                           from_: FromQuery = None, to: ToQuery = None,
                           format: FormatQuery = "json") -> Response:
    """kWh saved by the public lighting per commune and month, by cause (docs/lighting_savings.md)."""
    if from_ and to and to < from_:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "'to' must not be before 'from'")
    rows = await db_opendata.lighting_savings_monthly(conn=conn, tenant=tenant, commune=commune,
                                                      start=from_, end=to)
    return _respond(exports.DATASETS["lighting-savings"], tenant, exports.savings_items(rows),
                    format)


@router.get("/streetlights")
async def streetlights(conn: ConnDep, tenant: TenantDep, commune: CommuneQuery = None,
                       format: FormatQuery = "json") -> Response:
    """The streetlight inventory (GeoJSON: an RFC 7946 FeatureCollection of points)."""
    rows = await db_opendata.streetlights(conn=conn, tenant=tenant, commune=commune)
    return _respond(exports.DATASETS["streetlights"], tenant, exports.inventory_items(rows), format)
