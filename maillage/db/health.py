"""Is the database there: the API's `/health` probe."""

from __future__ import annotations

import psycopg


async def ping(*, conn: psycopg.AsyncConnection) -> None:
    """Raise when the database does not answer a trivial query."""
    await conn.execute("SELECT 1")
