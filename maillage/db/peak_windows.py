"""Declared peak windows (demand response) and the load they shed, measured from stored readings.

The shed is the streetlights' summed mean `lamp_power_w` before the window minus during it, over
the lamps with readings in both periods: before = the window's length (at most an hour) ending
one second before its start; during = from one second after the dimming command was
acknowledged by every lamp (else a quarter of the window, at most a minute, after the start)
to the end (or now). Readings carry whole-second times, so the one-second margins keep a
reading taken across a switch out of both periods; and a reading counts only if it was also
received within its period (before: received before the start; during: before the end): a
device that publishes late reports its state when it sends, not when its reading says.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

COLUMNS = ("w.id, w.tenant_id, w.area, w.name, w.start_ts, w.end_ts, w.level, w.created_by, "
           "w.created_at, w.dim_command_id, w.restore_command_id, "
           "dc.state AS dim_state, dc.finished_at AS dimmed_at, rc.state AS restore_state")
_FROM = ("peak_windows w LEFT JOIN commands dc ON dc.id = w.dim_command_id "
         "LEFT JOIN commands rc ON rc.id = w.restore_command_id")
MARGIN = timedelta(seconds=1)


async def create_window(*, conn: psycopg.AsyncConnection, tenant: str, area: str, name: str | None,
                        start: datetime, end: datetime, level: float,
                        created_by: str) -> dict[str, Any]:
    """Declare a window; returns it."""
    cur = await conn.execute(
        "INSERT INTO peak_windows (tenant_id, area, name, start_ts, end_ts, level, created_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (tenant, area, name, start, end, level, created_by))
    row = await cur.fetchone()
    assert row is not None
    got = await get_window(conn=conn, tenant=tenant, window_id=int(row[0]))
    assert got is not None
    return got


async def list_windows(*, conn: psycopg.AsyncConnection, tenant: str | None,
                       limit: int) -> list[dict[str, Any]]:
    """Windows of the tenant (None: every tenant), latest start first."""
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"SELECT {COLUMNS} FROM {_FROM} WHERE (%(t)s::text IS NULL OR w.tenant_id = %(t)s) "
        "ORDER BY w.start_ts DESC, w.id DESC LIMIT %(limit)s", {"t": tenant, "limit": limit})
    return list(await cur.fetchall())


async def get_window(*, conn: psycopg.AsyncConnection, tenant: str | None,
                     window_id: int) -> dict[str, Any] | None:
    """One window within the tenant, else None."""
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"SELECT {COLUMNS} FROM {_FROM} WHERE w.id = %(id)s "
        "AND (%(t)s::text IS NULL OR w.tenant_id = %(t)s)", {"id": window_id, "t": tenant})
    return await cur.fetchone()


def periods(window: dict[str, Any], now: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    """(before from, before to, during from, during to) of a window (see the module docstring)."""
    start, end = window["start_ts"], window["end_ts"]
    length = min(end - start, timedelta(hours=1))
    settled = window["dimmed_at"] if window["dim_state"] == "done" and window["dimmed_at"] else (
        start + min(length / 4, timedelta(minutes=1)))
    return start - length, start - MARGIN, max(start, settled) + MARGIN, min(end, now)


async def measured_shed(*, conn: psycopg.AsyncConnection, tenant: str, devices: Sequence[str],
                        window: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """`{before_kw, during_kw, shed_kw, lamps, before, during}`; None before the window starts
    or when no lamp has readings in both periods."""
    b0, b1, d0, d1 = periods(window, now)
    if d1 <= d0 or not devices:
        return None
    cur = await conn.execute(
        "WITH per AS (SELECT r.device_pk, "
        "  avg(r.value) FILTER (WHERE r.ts >= %(b0)s AND r.ts < %(b1)s "
        "                       AND r.received_at < %(start)s) AS before_w, "
        "  avg(r.value) FILTER (WHERE r.ts >= %(d0)s AND r.ts < %(d1)s "
        "                       AND r.received_at < %(d1)s) AS during_w "
        "  FROM readings r JOIN devices d ON d.pk = r.device_pk "
        "  WHERE d.tenant_id = %(t)s AND d.device_id = ANY(%(devices)s) "
        "  AND r.metric_id = (SELECT id FROM metrics WHERE name = 'lamp_power_w') "
        "  AND r.ts >= %(b0)s AND r.ts < %(d1)s GROUP BY r.device_pk) "
        "SELECT count(*), sum(before_w), sum(during_w) FROM per "
        "WHERE before_w IS NOT NULL AND during_w IS NOT NULL",
        {"b0": b0, "b1": b1, "d0": d0, "d1": d1, "start": window["start_ts"], "t": tenant,
         "devices": list(devices)})
    row = await cur.fetchone()
    if row is None or not row[0]:
        return None
    lamps, before_w, during_w = int(row[0]), float(row[1]), float(row[2])
    return {"before_kw": round(before_w / 1000, 4), "during_kw": round(during_w / 1000, 4),
            "shed_kw": round((before_w - during_w) / 1000, 4), "lamps": lamps,
            "before": {"from": b0, "to": b1}, "during": {"from": d0, "to": d1}}


# -- the control processor (synchronous, inside its transaction) -----------------------------------

def take_due_starts(*, conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Windows in progress not dimmed yet (locked, SKIP LOCKED)."""
    cur = conn.cursor(row_factory=dict_row).execute(
        "SELECT id, tenant_id, area, name, level FROM peak_windows WHERE dim_command_id IS NULL "
        "AND start_ts <= now() AND end_ts > now() FOR UPDATE SKIP LOCKED")
    return list(cur.fetchall())


def take_due_ends(*, conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Dimmed windows that are over and not restored yet (locked, SKIP LOCKED)."""
    cur = conn.cursor(row_factory=dict_row).execute(
        "SELECT id, tenant_id, area, name, level FROM peak_windows WHERE dim_command_id IS NOT NULL "
        "AND restore_command_id IS NULL AND end_ts <= now() FOR UPDATE SKIP LOCKED")
    return list(cur.fetchall())


def set_command(*, conn: psycopg.Connection, window_id: int, which: str, command_id: int) -> None:
    """Record the dimming (`dim`) or restoring (`restore`) command of a window."""
    column = {"dim": "dim_command_id", "restore": "restore_command_id"}[which]
    conn.execute(f"UPDATE peak_windows SET {column} = %s WHERE id = %s", (command_id, window_id))
