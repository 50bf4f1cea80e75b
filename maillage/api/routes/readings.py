"""Readings of a device: raw rows (paginated) or buckets (15m, 1h, 1d, 1mo) in a local time zone."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status

from maillage.api.access_log import record_care_access
from maillage.api.deps import ConnDep, PrincipalDep
from maillage.api.routes.buckets import as_csv, device_buckets
from maillage.api.routes.devices import find_device
from maillage.db import readings as db_readings
from maillage.db.grains import Bucket

router = APIRouter(prefix="/v1/devices", tags=["readings"])


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            f"{name}: give a time zone (e.g. 2026-11-23T00:00:00Z or +01:00)")
    return value


@router.get("/{device_id}/readings")
async def readings(
    device_id: str, conn: ConnDep, p: PrincipalDep, request: Request,
    metric: Annotated[str | None, Query(description="Only this metric (all when absent)")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    bucket: Bucket | None = None,
    tz: Annotated[str | None, Query(description="IANA zone for buckets, default the tenant's")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    after: Annotated[str | None, Query(description="Cursor from the previous page's `next`")] = None,
    tenant: str | None = None,
    format: Annotated[Literal["json", "csv"], Query(description="csv: a download")] = "json",
) -> Any:
    """`{"items": [...]}`: raw `{ts, metric, value}` or bucketed `{bucket, metric, value, min, max}`."""
    start, end = _aware("from", from_), _aware("to", to)
    if start and end and end <= start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "'to' must be after 'from'")
    dev, pk = await find_device(conn, p, device_id, tenant)
    await record_care_access(conn, p, tenant=dev.tenant, device_id=dev.device_id,
                             device_type=dev.type, what=f"readings {metric or '*'}")
    if bucket is not None:
        buckets = await device_buckets(request, device_pk=pk, metric=metric, start=start, end=end,
                                       bucket=bucket, tz=tz, limit=limit)
        if format == "csv":
            return as_csv(buckets, f"{dev.device_id}-{bucket}.csv")
        return {"items": buckets}
    rows = await db_readings.raw_page(conn=conn, device_pk=pk, metric=metric, start=start, end=end,
                                      after=_cursor(after), limit=limit + 1)
    items = rows[:limit]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = f"{last['ts'].isoformat()}|{last['metric']}"
    if format == "csv":
        return as_csv(items, f"{dev.device_id}.csv")
    return {"items": items, "next": nxt}


def _cursor(after: str | None) -> tuple[datetime, str] | None:
    if after is None:
        return None
    try:
        ts, metric = after.rsplit("|", 1)
        return datetime.fromisoformat(ts), metric
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "after: not a cursor from 'next'") from exc
