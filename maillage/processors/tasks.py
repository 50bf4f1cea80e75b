"""What the processes' tasks share: one fate for a process's tasks, and a periodic database job."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg


async def together(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Run a process's tasks until one fails or `stop` is set; then stop the others, and raise
    the first failure (a process that lost a part exits; the supervisor starts it again)."""
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            raise r


async def every(database_url: str, job: Callable[[psycopg.Connection], Any], stop: asyncio.Event,
                *, tick_s: float) -> None:
    """`job(conn)` in a worker thread every `tick_s` until `stop`, on one autocommit connection;
    a lost connection ends the loop (raised: the process exits and is started again)."""
    conn = await asyncio.to_thread(lambda: psycopg.connect(database_url, autocommit=True))
    try:
        while not stop.is_set():
            await asyncio.to_thread(job, conn)
            try:
                await asyncio.wait_for(stop.wait(), tick_s)
            except TimeoutError:
                pass
    finally:
        conn.close()


class LazyConnection:
    """A sink's one autocommit connection, opened on first use and again after it was lost."""

    url: str
    _conn: psycopg.Connection | None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
