"""Copies of messages without a device time, redelivered by the broker (MQTT DUP): found here.

A message without a measurement time (a TIC historique frame, an event or ack without `ts`) is
timed by its receipt, so a copy the broker sends again after a gateway crash would be stored at
a second time. The gateway marks such copies (`redelivered`); these queries say which of them
were stored already: same device, same content, timed by its receipt within `WINDOW_S` before.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from maillage.envelope import from_us

WINDOW_S = 3600
"""How far back a first copy is looked for (a gateway restarts, its session resumes, well within)."""


def stored_events(conn: psycopg.Connection, rows: Sequence[tuple[int, str, bytes, int]]) -> set[int]:
    """Indices of `rows` (device pk, event, attrs JSON, receive µs) already stored."""
    found: set[int] = set()
    for i, (pk, event, attrs, rx) in enumerate(rows):
        rx_at = from_us(rx)
        if conn.execute(
                "SELECT 1 FROM events WHERE device_pk = %s AND event = %s AND attrs = %s::jsonb "
                "AND ts = received_at AND ts >= %s - make_interval(secs => %s) AND ts < %s LIMIT 1",
                (pk, event, attrs.decode(), rx_at, WINDOW_S, rx_at)).fetchone():
            found.add(i)
    return found


def stored_readings(conn: psycopg.Connection,
                    msgs: Sequence[tuple[int, dict[str, float], int]]) -> set[int]:
    """Indices of `msgs` (device pk, {metric: value}, receive µs) whose every value is stored
    at one earlier receipt-timed instant."""
    found: set[int] = set()
    for i, (pk, values, rx) in enumerate(msgs):
        rx_at = from_us(rx)
        if conn.execute(
                "SELECT r.ts FROM readings r JOIN metrics m ON m.id = r.metric_id "
                "JOIN unnest(%s::text[], %s::float8[]) AS v(name, value) "
                "ON v.name = m.name AND v.value = r.value "
                "WHERE r.device_pk = %s AND r.ts = r.received_at "
                "AND r.ts >= %s - make_interval(secs => %s) AND r.ts < %s "
                "GROUP BY r.ts HAVING count(*) = %s LIMIT 1",
                (list(values), list(values.values()), pk, rx_at, WINDOW_S, rx_at,
                 len(values))).fetchone():
            found.add(i)
    return found
