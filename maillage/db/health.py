"""Is the database there: the API's `/health` probe, and the processors' wait at start."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg


async def ping(*, conn: psycopg.AsyncConnection) -> None:
    """Raise when the database does not answer a trivial query."""
    await conn.execute("SELECT 1")


def wait_until_reachable(url: str, *, poll_s: float = 0.5,
                         log: Callable[[str], None] | None = None) -> None:
    """Block until the database accepts a connection (a processor starting during an outage
    waits here instead of exiting again and again under the supervisor's growing back-off)."""
    warned = False
    while True:
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            if warned and log is not None:
                log("the database answers again")
            return
        except psycopg.OperationalError as exc:
            if not _transient(exc):
                raise  # a wrong password or database name does not mend itself: say so, exit
            if not warned and log is not None:
                log(f"waiting for the database: {str(exc).strip().splitlines()[0][:200]}")
            warned = True
            time.sleep(poll_s)


def _transient(exc: psycopg.OperationalError) -> bool:
    """Unreachable (refused, timed out), starting or shutting down, or a connection failure; not
    a refusal of the credentials or of the database name (libpq reports those before any SQLSTATE
    reaches the client, so its message tells)."""
    if exc.sqlstate is not None:
        return exc.sqlstate.startswith(("57P", "08"))
    text = str(exc).lower()
    return not any(m in text for m in _PERMANENT)


_PERMANENT = ("authentication failed", "does not exist", "no pg_hba.conf entry",
              "permission denied", "invalid connection option", "invalid dsn")
