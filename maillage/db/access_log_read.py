"""Reading the care access log for its export to tenant admins (`GET /v1/access-log`).

Apart from `db/access_log.py` (the write, owned by another piece of work at the time); the
integrator may fold the two together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

COLUMNS = ("id", "at", "token_id", "role", "tenant_id", "device_id", "what")


async def list_care_access(*, conn: psycopg.AsyncConnection, tenant: str | None,
                           device: str | None = None, start: datetime | None = None,
                           end: datetime | None = None, before: int | None = None,
                           limit: int) -> list[dict[str, Any]]:
    """Lines of the care access log in [start, end), newest first, with id below `before`."""
    cur = await conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM care_access_log "
        "WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s) "
        "AND (%(device)s::text IS NULL OR device_id = %(device)s) "
        "AND (%(start)s::timestamptz IS NULL OR at >= %(start)s) "
        "AND (%(end)s::timestamptz IS NULL OR at < %(end)s) "
        "AND (%(before)s::bigint IS NULL OR id < %(before)s) "
        "ORDER BY id DESC LIMIT %(limit)s",
        {"tenant": tenant, "device": device, "start": start, "end": end, "before": before,
         "limit": limit})
    return [dict(zip(COLUMNS, r, strict=True)) for r in await cur.fetchall()]
