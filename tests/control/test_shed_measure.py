"""The kW shed of a peak window from stored readings (`db.peak_windows.measured_shed`), on the
shared stack's PostgreSQL with readings written by hand: the periods, their margins, and a
late reading (stamped before the window, received during it) left out."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from maillage.db import peak_windows
from tests.commands.lighting_stack import LightingWorld

START = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
END = START + timedelta(minutes=10)
DIMMED = START + timedelta(seconds=20)  # every lamp acknowledged the dimming then


def _write(conn: psycopg.Connection, tenant: str, lamp: str, rows: list[tuple[datetime, float, datetime]]) -> None:
    pk = conn.execute("SELECT pk FROM devices WHERE tenant_id = %s AND device_id = %s",
                      (tenant, lamp)).fetchone()
    metric = conn.execute("SELECT id FROM metrics WHERE name = 'lamp_power_w'").fetchone()
    assert pk is not None and metric is not None
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO readings (device_pk, metric_id, ts, value, received_at) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        [(pk[0], metric[0], ts, v, rx) for ts, v, rx in rows])


def _measure(db: str, tenant: str, window: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    async def run() -> dict[str, Any] | None:
        async with await psycopg.AsyncConnection.connect(db) as conn:
            return await peak_windows.measured_shed(conn=conn, tenant=tenant, devices=["a", "b"],
                                                    window=window, now=now)
    return asyncio.run(run())


def test_shed_from_readings(lighting: LightingWorld) -> None:
    tenant = f"s{uuid.uuid4().hex[:10]}"
    db = lighting.stack.db()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s)", (tenant, tenant))
        for lamp in ("a", "b"):
            conn.execute("INSERT INTO devices (tenant_id, device_id, type, mqtt_username, commune, "
                         "meta) VALUES (%s, %s, 'streetlight', %s, 'C', %s)",
                         (tenant, lamp, f"{tenant}/{lamp}", Jsonb({})))
        minute = timedelta(minutes=1)
        for lamp, full, dim in (("a", 100.0, 54.0), ("b", 50.0, 27.0)):
            rows = [(START - 10 * minute + k * minute, full, START - 10 * minute + k * minute)
                    for k in range(10)]  # before: every minute up to the start
            rows += [(START + 30 * timedelta(seconds=1) + k * minute, dim,
                      START + 30 * timedelta(seconds=1) + k * minute) for k in range(9)]
            rows += [(END + minute, full, END + minute)]  # restored: in neither period
            rows += [(START + timedelta(seconds=10), full, START + timedelta(seconds=10))]  # settling
            _write(conn, tenant, lamp, rows)
        # Lamp a also sent, late, a reading stamped before the window but taken after the dimming.
        _write(conn, tenant, "a", [(START - timedelta(seconds=90), 54.0, START + minute)])
    window = {"start_ts": START, "end_ts": END, "dim_state": "done", "dimmed_at": DIMMED}
    m = _measure(db, tenant, window, now=END + 10 * minute)
    assert m is not None
    assert (m["before_kw"], m["during_kw"], m["lamps"]) == (0.15, 0.081, 2)
    assert m["shed_kw"] == 0.069
    assert m["before"] == {"from": START - 10 * minute, "to": START - timedelta(seconds=1)}
    assert m["during"] == {"from": DIMMED + timedelta(seconds=1), "to": END}
    # While the window runs, "during" stops at now; before the dimming was acknowledged (no
    # acknowledgement), it starts a quarter of the window (at most a minute) after the start.
    pending = {**window, "dim_state": "sent", "dimmed_at": None}
    m = _measure(db, tenant, pending, now=START + 5 * minute)
    assert m is not None and m["during"]["from"] == START + minute + timedelta(seconds=1)
    assert m["during"]["to"] == START + 5 * minute and m["during_kw"] == 0.081
    assert _measure(db, tenant, window, now=START) is None  # nothing to measure yet
