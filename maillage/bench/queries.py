"""The SQL the bench runs itself: its devices' keys, counts of their rows and events, metric ids."""

from __future__ import annotations

from collections import Counter

import psycopg


def device_pks(*, conn: psycopg.Connection, tenant: str, like: str) -> dict[str, int]:
    """Keys of the devices of `tenant` whose id matches the LIKE pattern `like`."""
    rows = conn.execute("SELECT device_id, pk FROM devices WHERE tenant_id = %s AND device_id LIKE %s",
                        (tenant, like)).fetchall()
    return {r[0]: r[1] for r in rows}


def count_readings(*, conn: psycopg.Connection, device_pks: list[int]) -> int:
    """Rows of `readings` of these devices."""
    row = conn.execute("SELECT count(*) FROM readings WHERE device_pk = ANY(%s)", (device_pks,)).fetchone()
    return int(row[0]) if row else 0


def metric_ids(*, conn: psycopg.Connection, names: list[str]) -> dict[str, int]:
    """Ids of the metrics of these names that exist."""
    return dict(conn.execute("SELECT name, id FROM metrics WHERE name = ANY(%s)", (names,)).fetchall())


def add_metrics(*, conn: psycopg.Connection, names: list[str]) -> None:
    """Add these metric names to the vocabulary (those already there are left alone)."""
    conn.execute("INSERT INTO metrics (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
                 (names,))


def readings_by_device_metric(*, conn: psycopg.Connection,
                              device_pks: list[int]) -> Counter[tuple[str, str]]:
    """Rows of `readings` per (device id, metric name) of these devices."""
    rows = conn.execute(
        "SELECT d.device_id, m.name, count(*) FROM readings r JOIN devices d ON d.pk = r.device_pk "
        "JOIN metrics m ON m.id = r.metric_id WHERE r.device_pk = ANY(%s) GROUP BY 1, 2",
        (device_pks,)).fetchall()
    return Counter({(r[0], r[1]): r[2] for r in rows})


def events_by_device(*, conn: psycopg.Connection, device_pks: list[int]) -> Counter[str]:
    """Rows of `events` per device id of these devices."""
    ev = conn.execute(
        "SELECT d.device_id, count(*) FROM events e JOIN devices d ON d.pk = e.device_pk "
        "WHERE e.device_pk = ANY(%s) GROUP BY 1", (device_pks,)).fetchall()
    return Counter({r[0]: r[1] for r in ev})
