"""Bucketed readings (15m, 1h, 1d, 1mo in a local zone) for a device or an area, and CSV export."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse

from maillage.api.deps import PrincipalDep, require_roles
from maillage.db.grains import Bucket, Level
from maillage.db.readings import query_area, query_readings, rows_to_csv
from maillage.registry.models import Role

router = APIRouter(prefix="/v1/areas", tags=["readings"])


async def _in_thread(request: Request, fn: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Run a synchronous query function on a pooled connection, in a worker thread."""

    def call() -> list[dict[str, Any]]:
        with request.app.state.sync_pool.connection() as conn:
            return list(fn(conn, **kwargs))

    try:
        return await asyncio.to_thread(call)
    except ValueError as exc:  # unknown zone, bucket or level
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


async def device_buckets(request: Request, *, device_pk: int, metric: str | None,
                         start: datetime | None, end: datetime | None, bucket: str, tz: str | None,
                         limit: int) -> list[dict[str, Any]]:
    """Buckets of one device (rollups refreshed for it first, so late data is included)."""
    return await _in_thread(request, query_readings, device_pk=device_pk, metric=metric, start=start,
                            end=end, bucket=bucket, tz=tz, limit=limit)


def as_csv(items: list[dict[str, Any]], filename: str) -> PlainTextResponse:
    """A CSV download of list items; the file name keeps letters, digits, `.`, `_` and `-` only
    (an area name from the path may hold anything, and a control character in a header made the
    server drop the connection: found by schemathesis)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return PlainTextResponse(rows_to_csv(items), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{safe}"'})


@router.get("/{level}/{name}/readings", dependencies=[require_roles(Role.ADMIN, Role.ENERGY_MANAGER)])
async def area_readings(
    level: Level, name: str, request: Request, p: PrincipalDep,
    bucket: Bucket,
    metric: str | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    tz: Annotated[str | None, Query(description="IANA zone, default the tenant's")] = None,
    format: Literal["json", "csv"] = "json",
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> Any:
    """Energy summed over the area's devices and power mean/min/max per bucket."""
    scope = p.tenant or tenant
    if scope is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "pass ?tenant= (all-tenants token)")
    items = await _in_thread(request, query_area, tenant=scope, level=level, name=name,
                             metric=metric, start=from_, end=to, bucket=bucket, tz=tz)
    if format == "csv":
        return as_csv(items, f"{level}-{name}-{bucket}.csv")
    return {"items": items}
