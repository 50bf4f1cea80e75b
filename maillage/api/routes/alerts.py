"""Alerts people act on: list, get (with history and comments), ack, resolve, comment, statistics,
and the live stream of every alert change as server-sent events.

Who sees what, as for anomalies: admins every alert of their tenant (or of every tenant),
energy managers no care alert, care coordinators only care alerts of their tenant, opendata
tokens nothing (403). An alert the caller may not see does not exist for it (404). Every care
alert read (list, get, stream, and the answer to an ack, resolve or comment) goes to the care
access log.

The stream holds one PostgreSQL connection of its own (LISTEN alert_events), outside the pool:
fine for the tens of coordinators and managers of a territory, not for thousands of clients
(a fan-out process sharing one LISTEN would be the next step).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from maillage.api.access_log import record_care_access
from maillage.api.deps import (
    ConnDep,
    PrincipalDep,
    ReleasedPrincipalDep,
    care_scope,
    require_roles,
    tenant_scope,
    window,
)
from maillage.api.routes.anomalies import KINDS
from maillage.db import alerts as db_alerts
from maillage.registry.models import Role
from maillage.registry.tokens import Principal, still_valid

log = logging.getLogger(__name__)

READERS = (Role.ADMIN, Role.ENERGY_MANAGER, Role.CARE_COORDINATOR)
router = APIRouter(prefix="/v1/alerts", tags=["alerts"], dependencies=[require_roles(*READERS)])
# The stream authenticates without holding a pooled connection for its whole life.
stream_router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

Severity = Literal["info", "warning", "critical"]
State = Literal["open", "acknowledged", "resolved"]
MAX_PAGE = 1000
HEARTBEAT_S = 15.0
"""Comment lines on an idle stream, so proxies keep it and clients notice a dead one."""
WAIT_S = 5.0
"""How long the stream waits for a NOTIFY before looking at the table anyway."""
TOKEN_RECHECK_S = 5.0
"""A stream ends within this long after its token is revoked or expires (a reconnect gets 401)."""


class AlertOut(BaseModel):
    """An alert as the API shows it (the stream's snapshots have the same fields)."""

    id: int
    tenant: str
    device_id: str
    kind: str
    severity: Severity
    state: State
    count: int
    first_at: datetime
    last_at: datetime
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    escalation_level: int
    group: str | None


class AlertEventOut(BaseModel):
    """One change of an alert: who (`system` or a token), what, when, and its detail."""

    id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


class AlertDetailOut(AlertOut):
    """An alert with its history and comments, oldest first."""

    events: list[AlertEventOut]


class AlertPage(BaseModel):
    """A page of alerts, latest anomaly first, with the cursor of the next page."""

    items: list[AlertOut]
    next: str | None = None


class NoteIn(BaseModel):
    """An optional note with an ack or a resolve (what was done)."""

    note: str | None = Field(default=None, max_length=4000)


class CommentIn(BaseModel):
    """A comment on an alert."""

    text: str = Field(min_length=1, max_length=4000)


class KindStats(BaseModel):
    """Per kind: alerts opened in the window and seconds to acknowledge and to resolve."""

    kind: str
    alerts: int
    acknowledged: int
    resolved: int
    ack_p50_s: float | None
    ack_p90_s: float | None
    resolve_p50_s: float | None
    resolve_p90_s: float | None


class StatsOut(BaseModel):
    """`{"items": [per kind]}`, over alerts opened in [from, to)."""

    items: list[KindStats]


def _out(row: dict[str, Any]) -> AlertOut:
    return AlertOut(id=row["id"], tenant=row["tenant_id"], device_id=row["device_id"],
                    kind=row["kind"], severity=row["severity"], state=row["state"],
                    count=row["count"], first_at=row["first_at"], last_at=row["last_at"],
                    opened_at=row["opened_at"], acknowledged_at=row["acknowledged_at"],
                    acknowledged_by=row["acknowledged_by"], resolved_at=row["resolved_at"],
                    resolved_by=row["resolved_by"], escalation_level=row["escalation_level"],
                    group=row["grp"])


def _cursor(after: str | None) -> tuple[datetime, int] | None:
    if after is None:
        return None
    try:
        ts, alert_id = after.rsplit("|", 1)
        at, the_id = datetime.fromisoformat(ts), int(alert_id)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "after: not a cursor from 'next'") from exc
    if at.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "after: not a cursor from 'next'")
    return at, the_id


def _kind(kind: str | None) -> str | None:
    if kind is not None and kind not in KINDS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"kind: unknown kind {kind!r}; one of: {', '.join(KINDS)}")
    return kind


@router.get("", response_model=AlertPage)
async def list_alerts(
    conn: ConnDep, p: PrincipalDep,
    state: Annotated[State | None, Query(description="Only alerts in this state")] = None,
    kind: Annotated[str | None, Query(description="Only this kind (e.g. fall)")] = None,
    severity: Annotated[Severity | None, Query(description="Only this severity")] = None,
    device: Annotated[str | None, Query(description="Only alerts of this device")] = None,
    from_: Annotated[datetime | None, Query(alias="from",
                                            description="Latest anomaly at or after")] = None,
    to: Annotated[datetime | None, Query(description="First anomaly before")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[str | None, Query(description="Cursor from the previous page's `next`")] = None,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> AlertPage:
    """`{"items": [...], "next": cursor|null}`: alerts with an anomaly in [from, to), latest first."""
    start, end = window(from_, to)
    rows = await db_alerts.list_alerts(
        conn=conn, tenant=tenant_scope(p, tenant), care=care_scope(p), state=state,
        kind=_kind(kind), severity=severity, device=device, start=start, end=end,
        after=_cursor(after), limit=limit + 1)
    page = rows[:limit]
    seen = sorted({(r["tenant_id"], r["device_id"]) for r in page if r["care"]})
    if seen:
        async with conn.pipeline():  # one round trip for the page's access-log lines
            for t, device_id in seen:
                await record_care_access(conn, p, tenant=t, device_id=device_id, device_type=None,
                                         what="list alerts")
    nxt = f"{page[-1]['last_at'].isoformat()}|{page[-1]['id']}" if len(rows) > limit else None
    return AlertPage(items=[_out(r) for r in page], next=nxt)


@router.get("/stats", response_model=StatsOut)
async def alert_stats(
    conn: ConnDep, p: PrincipalDep,
    from_: Annotated[datetime | None, Query(alias="from", description="Opened at or after")] = None,
    to: Annotated[datetime | None, Query(description="Opened before")] = None,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> StatsOut:
    """Time to acknowledge and to resolve, p50 and p90 in seconds, per kind (no care detail:
    counts and durations only, so no access-log line)."""
    start, end = window(from_, to)
    rows = await db_alerts.alert_stats(conn=conn, tenant=tenant_scope(p, tenant),
                                       care=care_scope(p), start=start, end=end)
    return StatsOut(items=[KindStats(**r) for r in rows])


async def _visible(conn: psycopg.AsyncConnection, p: Principal, alert_id: int) -> dict[str, Any]:
    row = await db_alerts.get_alert(conn=conn, alert_id=alert_id, tenant=p.tenant,
                                    care=care_scope(p))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id} not found")
    return row


@router.get("/{alert_id:int}", response_model=AlertDetailOut)
async def get_alert(alert_id: int, conn: ConnDep, p: PrincipalDep) -> AlertDetailOut:
    """One alert with its events (404 when it does not exist for the caller)."""
    row = await _visible(conn, p, alert_id)
    if row["care"]:
        await record_care_access(conn, p, tenant=row["tenant_id"], device_id=row["device_id"],
                                 device_type=None, what=f"get alert {alert_id}")
    events = await db_alerts.alert_history(conn=conn, alert_id=alert_id)
    return AlertDetailOut(**_out(row).model_dump(),
                          events=[AlertEventOut(**e) for e in events])


async def _act(conn: psycopg.AsyncConnection, p: Principal, alert_id: int, action: str,
               detail: dict[str, Any]) -> AlertOut:
    try:
        done = await db_alerts.act(conn=conn, alert_id=alert_id, tenant=p.tenant,
                                   care=care_scope(p), action=action, actor=p.actor, detail=detail)
    except db_alerts.ActionRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if done is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id} not found")
    log.info("alert %d %s by %s", alert_id, action, p.actor)
    if done.alert["care"]:  # the answer shows the care alert: a read as well
        await record_care_access(conn, p, tenant=done.alert["tenant_id"],
                                 device_id=done.alert["device_id"], device_type=None,
                                 what=f"{action} alert {alert_id}")
    return _out(done.alert)


@router.post("/{alert_id:int}/ack", response_model=AlertOut)
async def ack_alert(alert_id: int, conn: ConnDep, p: PrincipalDep,
                    body: NoteIn | None = None) -> AlertOut:
    """Acknowledge: someone is on it; escalation stops (409 if acknowledged or resolved)."""
    note = body.note if body else None
    return await _act(conn, p, alert_id, "acknowledged", {"note": note} if note else {})


@router.post("/{alert_id:int}/resolve", response_model=AlertOut)
async def resolve_alert(alert_id: int, conn: ConnDep, p: PrincipalDep,
                        body: NoteIn | None = None) -> AlertOut:
    """Resolve, with an optional note of what was done (409 if already resolved)."""
    note = body.note if body else None
    return await _act(conn, p, alert_id, "resolved", {"note": note} if note else {})


@router.post("/{alert_id:int}/comments", response_model=AlertOut,
             status_code=status.HTTP_201_CREATED)
async def comment_alert(alert_id: int, body: CommentIn, conn: ConnDep,
                        p: PrincipalDep) -> AlertOut:
    """Add a comment to the alert's history (409 once resolved: use the resolve note)."""
    return await _act(conn, p, alert_id, "commented", {"comment": body.text})


@stream_router.get("/stream", response_class=EventSourceResponse, responses={
    200: {"description": "An endless server-sent event stream", "content": {"text/event-stream": {}}}})
async def stream_alerts(
    request: Request, p: ReleasedPrincipalDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> EventSourceResponse:
    """Server-sent events: one `data:` JSON snapshot per alert change, `id:` the event id;
    resumes after `Last-Event-ID`; heartbeat comments every 15 s; ends within 5 s of its token
    being revoked or expiring."""
    if p.role not in READERS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {p.role.value} may not do this")
    scope, care = tenant_scope(p, tenant), care_scope(p)
    try:
        after = int(last_event_id) if last_event_id else None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "Last-Event-ID: not an event id from this stream") from exc
    listener = await db_alerts.listen(url=request.app.state.database_url)
    try:
        # LISTEN is on before the cursor is read: whatever commits later is notified.
        if after is None:
            after = await db_alerts.last_event_id(conn=listener)
    except BaseException:
        await listener.close()
        raise
    ping = float(getattr(request.app.state, "sse_heartbeat_s", HEARTBEAT_S))
    recheck = float(getattr(request.app.state, "token_recheck_s", TOKEN_RECHECK_S))
    return EventSourceResponse(_events(listener, p, scope, care, after, recheck), ping=ping)


async def _events(listener: psycopg.AsyncConnection, p: Principal, tenant: str | None,
                  care: bool | None, after: int,
                  recheck_s: float) -> AsyncIterator[dict[str, str]]:
    """The stream's events: those after `after`, then each one as it commits, while the token
    stays valid."""
    cursor = after
    late: list[int] = []  # notified ids at or below the cursor (committed out of order)
    sent: deque[int] = deque(maxlen=2000)  # ids sent below the cursor: never twice
    checked = time.monotonic()
    try:
        while True:
            if time.monotonic() - checked >= recheck_s:
                if not await still_valid(conn=listener, token_id=p.token_id):
                    log.info("alert stream of token %d ended: revoked or expired", p.token_id)
                    return
                checked = time.monotonic()
            batch = await db_alerts.events_after(conn=listener, after=cursor, also=late,
                                                 tenant=tenant, care=care)
            for r in batch:
                if r["id"] <= cursor and r["id"] in sent:
                    continue
                if r["care"]:
                    await record_care_access(listener, p, tenant=r["tenant_id"],
                                             device_id=r["snapshot"].get("device_id"),
                                             device_type=None, what=f"stream alert {r['alert_id']}")
                sent.append(r["id"])
                cursor = max(cursor, r["id"])
                yield {"id": str(r["id"]), "data": db_alerts.snapshot_json(r)}
            if len(batch) >= db_alerts.STREAM_BATCH:
                late = []
                continue
            notified = await db_alerts.wait_notified(conn=listener,
                                                     timeout=min(WAIT_S, recheck_s))
            late = [i for i in notified if i <= cursor and i not in sent]
    finally:
        await listener.close()
