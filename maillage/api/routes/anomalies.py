"""Anomalies found by the detection stage: a filtered, paginated list (newest first) and one by id.

Who sees what: admins every anomaly of their tenant (or of every tenant); energy managers no
care anomaly (health data: care kinds, and any anomaly of a care device); care coordinators only
care anomalies; opendata tokens nothing (403). Another tenant's anomaly, or one the role may not
see, does not exist for the caller (404). Every care anomaly returned is a read of care data and
goes to the care access log: one line per (tenant, device) of a page, one line per get.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from maillage.api.access_log import record_care_access
from maillage.api.deps import ConnDep, PrincipalDep, care_scope, require_roles, tenant_scope
from maillage.db import anomalies as db_anomalies
from maillage.registry.models import Role

router = APIRouter(prefix="/v1/anomalies", tags=["anomalies"],
                   dependencies=[require_roles(Role.ADMIN, Role.ENERGY_MANAGER,
                                               Role.CARE_COORDINATOR)])

KINDS = ("spike", "night_overconsumption", "zero_consumption", "meter_stuck",
         "voltage_out_of_range", "over_subscribed_power", "baseline_shift", "unexpected_export",
         "lamp_failure", "day_burner", "dimming_not_applied", "cabinet_overconsumption",
         "burning_hours", "fall", "panic_button", "long_inactivity", "night_wandering",
         "indoor_heat", "indoor_cold", "battery_low", "device_offline", "group_offline",
         "unusual_value", "malformed_payload", "duplicate", "out_of_order", "late_reading",
         "clock_skew")
"""The detection stage's anomaly kinds (`processors.detection.model.Kind`; a test keeps them equal:
the API meets the processors through tables, it does not import them)."""

Severity = Literal["info", "warning", "critical"]
MAX_PAGE = 1000


class AnomalyOut(BaseModel):
    """An anomaly as the API shows it; `end` is null while it is open."""

    id: str
    tenant: str
    device_id: str
    kind: str
    severity: Severity
    score: float
    start: datetime
    end: datetime | None
    evidence: dict[str, Any]
    group: str | None = None


class AnomalyPage(BaseModel):
    """A page of anomalies, newest first, with the cursor of the next page when there is one."""

    items: list[AnomalyOut]
    next: str | None = None


def _out(row: dict[str, Any]) -> AnomalyOut:
    return AnomalyOut(id=row["id"], tenant=row["tenant_id"], device_id=row["device_id"],
                      kind=row["kind"], severity=row["severity"], score=row["score"],
                      start=row["start_ts"], end=row["end_ts"], evidence=row["evidence"],
                      group=row["grp"])


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{name}: give a time zone (e.g. 2026-11-23T00:00:00Z or +01:00)")
    return value


def _cursor(after: str | None) -> tuple[datetime, str] | None:
    if after is None:
        return None
    try:
        ts, anomaly_id = after.rsplit("|", 1)
        at = datetime.fromisoformat(ts)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "after: not a cursor from 'next'") from exc
    if at.tzinfo is None or not anomaly_id:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "after: not a cursor from 'next'")
    return at, anomaly_id


@router.get("", response_model=AnomalyPage)
async def list_anomalies(
    conn: ConnDep, p: PrincipalDep,
    device: Annotated[str | None, Query(description="Only anomalies raised on this device")] = None,
    kind: Annotated[str | None, Query(description="Only this kind (e.g. device_offline)")] = None,
    severity: Annotated[Severity | None, Query(description="Only this severity")] = None,
    group: Annotated[str | None, Query(description="Only this group (e.g. cabinet:C-12)")] = None,
    from_: Annotated[datetime | None, Query(alias="from",
                                            description="Still open at or after this time")] = None,
    to: Annotated[datetime | None, Query(description="Started before this time")] = None,
    state: Annotated[Literal["open", "closed"] | None, Query(description="open: no end yet")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[str | None, Query(description="Cursor from the previous page's `next`")] = None,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> AnomalyPage:
    """`{"items": [...], "next": cursor|null}`: the anomalies overlapping [from, to), newest first."""
    if kind is not None and kind not in KINDS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"kind: unknown kind {kind!r}; one of: {', '.join(KINDS)}")
    start, end = _aware("from", from_), _aware("to", to)
    if start and end and end <= start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "'to' must be after 'from'")
    scope = tenant_scope(p, tenant)
    rows = await db_anomalies.list_anomalies(
        conn=conn, tenant=scope, care=care_scope(p), device=device, kind=kind,
        severity=severity, group=group, start=start, end=end, state=state,
        after=_cursor(after), limit=limit + 1)
    page = rows[:limit]
    seen = sorted({(r["tenant_id"], r["device_id"]) for r in page if r["care"]})
    if seen:
        async with conn.pipeline():  # one round trip for the page's access-log lines
            for t, device_id in seen:
                await record_care_access(conn, p, tenant=t, device_id=device_id, device_type=None,
                                         what="list anomalies")
    nxt = None
    if len(rows) > limit:
        last = page[-1]
        nxt = f"{last['start_ts'].isoformat()}|{last['id']}"
    return AnomalyPage(items=[_out(r) for r in page], next=nxt)


@router.get("/{anomaly_id}", response_model=AnomalyOut)
async def get_anomaly(anomaly_id: str, conn: ConnDep, p: PrincipalDep) -> AnomalyOut:
    """One anomaly (404 when it does not exist for the caller)."""
    row = await db_anomalies.get_anomaly(conn=conn, anomaly_id=anomaly_id, tenant=p.tenant,
                                         care=care_scope(p))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"anomaly {anomaly_id!r} not found")
    if row["care"]:
        await record_care_access(conn, p, tenant=row["tenant_id"], device_id=row["device_id"],
                                 device_type=None, what=f"get anomaly {row['id']}")
    return _out(row)
