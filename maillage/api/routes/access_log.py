"""`GET /v1/access-log`: the care access log, for tenant admins (JSON pages, or CSV).

Every read of care data through the API is a line there (who: token id and role; what; which
device; when). A tenant's admin reads its tenant's lines; an all-tenants admin any tenant's.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from maillage.api.deps import ConnDep, PrincipalDep, require_roles, tenant_scope, window
from maillage.db.access_log_read import list_care_access
from maillage.registry.models import Role

router = APIRouter(prefix="/v1/access-log", tags=["access log"],
                   dependencies=[require_roles(Role.ADMIN)])

MAX_PAGE = 10_000
CSV_FIELDS = ("id", "at", "token_id", "role", "tenant", "device_id", "what")


class AccessOut(BaseModel):
    """One read of care data."""

    id: int
    at: datetime
    token_id: int | None
    role: str
    tenant: str
    device_id: str | None
    what: str


class AccessPage(BaseModel):
    """Newest first; `next` is the `before` of the following page."""

    items: list[AccessOut]
    next: int | None = None


def _out(row: dict[str, Any]) -> AccessOut:
    return AccessOut(id=row["id"], at=row["at"], token_id=row["token_id"], role=row["role"],
                     tenant=row["tenant_id"], device_id=row["device_id"], what=row["what"])


@router.get("", response_model=AccessPage,
            responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV"}})
async def access_log(
    conn: ConnDep, p: PrincipalDep,
    device: Annotated[str | None, Query(description="Only reads of this device")] = None,
    from_: Annotated[datetime | None, Query(alias="from", description="At or after")] = None,
    to: Annotated[datetime | None, Query(description="Before")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    before: Annotated[int | None, Query(description="Cursor from the previous page's `next`")] = None,
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="csv: a CSV file")] = "json",  # noqa: A002
) -> Any:
    """Who read which care data, when: newest first, paginated (`X-Next` header in CSV)."""
    start, end = window(from_, to)
    rows = await list_care_access(conn=conn, tenant=tenant_scope(p, tenant), device=device,
                                  start=start, end=end, before=before, limit=limit + 1)
    page = [_out(r) for r in rows[:limit]]
    nxt = page[-1].id if len(rows) > limit else None
    if format == "json":
        return AccessPage(items=page, next=nxt)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_FIELDS)
    for a in page:
        writer.writerow([a.id, a.at.isoformat(), a.token_id, a.role, a.tenant, a.device_id or "",
                         a.what])
    headers = {"Content-Disposition": 'attachment; filename="care-access-log.csv"'}
    if nxt is not None:
        headers["X-Next"] = str(nxt)
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
