"""Lighting savings SQL: lamp inventory and readings in, lamp-night rows out, area sums back.

`daily(conn, *, tenant_id, area, name, start, end)`: one row per (area name, night) of the nights
[start, end) with `reference_wh`, `measured_wh`, `saved_wh` and the saving by cause in Wh
under `led_retrofit`, `dimming`, `switch_off`, `presence` (plus `other_wh`: what no cause
explains, e.g. a lamp lit before dusk). A night is named by the local date of its evening.
`by_cause` is what `GET /v1/savings` reads (through `db.savings.lighting_summary`): kWh, € and
kg CO2 per cause, priced with the tariff and factor stored with each night. The computation
itself is `processors/savings/lighting.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

AREAS = {"lamp": "device_id", "cabinet": "cabinet", "site": "site", "district": "district",
         "commune": "commune"}
"""Area levels of `daily` and the lamp-night column naming each."""
CAUSES = ("led_retrofit", "dimming", "switch_off", "presence")
LAMP_METRICS = ("lamp_power_w", "dimming_pct", "energy_import_wh")

_LAMPS = """
SELECT l.pk, l.device_id, l.lat, l.lon, l.site, l.district, l.commune, l.meta,
       coalesce(c.meta ->> 'presence_sensor', '') <> '' AS cabinet_presence
FROM devices l
LEFT JOIN devices c ON c.tenant_id = l.tenant_id AND c.device_id = l.meta ->> 'cabinet'
                   AND c.type = 'lighting_cabinet'
WHERE l.tenant_id = %(tenant)s AND l.type = 'streetlight'
ORDER BY l.device_id
"""

_SERIES = """
SELECT r.ts,
       max(r.value) FILTER (WHERE m.name = 'lamp_power_w') AS power_w,
       max(r.value) FILTER (WHERE m.name = 'dimming_pct') AS level,
       max(r.value) FILTER (WHERE m.name = 'energy_import_wh') AS energy_wh
FROM readings r JOIN metrics m ON m.id = r.metric_id
WHERE r.device_pk = %(pk)s AND m.name = ANY (%(metrics)s)
  AND r.ts > %(start)s AND r.ts <= %(end)s
GROUP BY r.ts ORDER BY r.ts
"""

_COLUMNS = ("tenant_id", "device_id", "night", "cabinet", "site", "district", "commune", "tech",
            "replaced_tech", "dusk", "dawn", "reference_wh", "measured_wh", "led_retrofit_wh",
            "dimming_wh", "switch_off_wh", "presence_wh", "other_wh", "readings", "eur_per_kwh",
            "kg_co2_per_kwh")


def tenants(conn: psycopg.Connection, *, tenant_id: str | None) -> list[tuple[str, str]]:
    """(tenant, timezone) of the tenants with streetlights (one tenant when given)."""
    rows = conn.execute(
        "SELECT t.id, t.timezone FROM tenants t WHERE (%(t)s::text IS NULL OR t.id = %(t)s) "
        "AND EXISTS (SELECT 1 FROM devices d WHERE d.tenant_id = t.id AND d.type = 'streetlight') "
        "ORDER BY t.id", {"t": tenant_id}).fetchall()
    return [(r[0], r[1]) for r in rows]


def lamps(conn: psycopg.Connection, *, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's streetlights with position, areas, meta and whether their cabinet has a
    presence sensor."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LAMPS, {"tenant": tenant_id}).fetchall()


def lamp_series(conn: psycopg.Connection, *, device_pk: int, start: datetime,
                end: datetime) -> list[tuple[datetime, float | None, float | None, float | None]]:
    """(ts, lamp_power_w, dimming_pct, energy_import_wh) of a lamp in (start, end], by time."""
    rows = conn.execute(_SERIES, {"pk": device_pk, "metrics": list(LAMP_METRICS),
                                  "start": start, "end": end}).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def reading_span(conn: psycopg.Connection, *, tenant_id: str) -> tuple[datetime, datetime] | None:
    """First and last reading times of the tenant's streetlights, or None without any."""
    row = conn.execute(
        "SELECT min(r.ts), max(r.ts) FROM readings r JOIN devices d ON d.pk = r.device_pk "
        "WHERE d.tenant_id = %s AND d.type = 'streetlight'", (tenant_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


def last_night(conn: psycopg.Connection, *, tenant_id: str) -> date | None:
    """The latest night stored for a tenant."""
    row = conn.execute("SELECT max(night) FROM lighting_savings WHERE tenant_id = %s",
                       (tenant_id,)).fetchone()
    return row[0] if row else None


def store(conn: psycopg.Connection, *, rows: Sequence[dict[str, Any]]) -> int:
    """Upsert lamp-night rows (keys: `_COLUMNS`); a recomputed night replaces the old one."""
    if not rows:
        return 0
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS)
    values = sql.SQL(", ").join(sql.Placeholder(c) for c in _COLUMNS)
    updates = sql.SQL(", ").join(
        sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c))
        for c in _COLUMNS[3:])
    query = sql.SQL(
        "INSERT INTO lighting_savings ({cols}) VALUES ({values}) "
        "ON CONFLICT (tenant_id, device_id, night) DO UPDATE SET {updates}, computed_at = now()"
    ).format(cols=cols, values=values, updates=updates)
    with conn.cursor() as cur:
        cur.executemany(query, list(rows))
    return len(rows)


def daily(conn: psycopg.Connection, *, tenant_id: str, area: str, name: str | None,
          start: date, end: date) -> list[dict[str, Any]]:
    """Per (area name, night) of the nights [start, end): lamps, reference, measured, saved and by cause (Wh).

    `area`: lamp, cabinet, site (street), district or commune; `name` None: every name.
    """
    column = AREAS.get(area)
    if column is None:
        raise ValueError(f"unknown area {area!r}; use one of {', '.join(AREAS)}")
    col = sql.Identifier(column)
    query = sql.SQL("""
        SELECT {col} AS name, night AS day, count(*) AS lamps,
               sum(reference_wh) AS reference_wh, sum(measured_wh) AS measured_wh,
               sum(reference_wh - measured_wh) AS saved_wh,
               sum(led_retrofit_wh) AS led_retrofit, sum(dimming_wh) AS dimming,
               sum(switch_off_wh) AS switch_off, sum(presence_wh) AS presence,
               sum(other_wh) AS other_wh
        FROM lighting_savings
        WHERE tenant_id = %(tenant)s AND night >= %(start)s AND night < %(end)s
          AND {col} IS NOT NULL AND (%(name)s::text IS NULL OR {col} = %(name)s)
        GROUP BY 1, 2 ORDER BY 1, 2
    """).format(col=col)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, {"tenant": tenant_id, "start": start, "end": end,
                                   "name": name}).fetchall()


_BY_CAUSE = """
SELECT sum(led_retrofit_wh), sum(dimming_wh), sum(switch_off_wh), sum(presence_wh),
       sum(led_retrofit_wh * eur_per_kwh), sum(dimming_wh * eur_per_kwh),
       sum(switch_off_wh * eur_per_kwh), sum(presence_wh * eur_per_kwh),
       sum(led_retrofit_wh * kg_co2_per_kwh), sum(dimming_wh * kg_co2_per_kwh),
       sum(switch_off_wh * kg_co2_per_kwh), sum(presence_wh * kg_co2_per_kwh),
       count(*), count(eur_per_kwh)
FROM lighting_savings
WHERE tenant_id = %(tenant)s
  AND (%(start)s::date IS NULL OR night >= %(start)s) AND (%(end)s::date IS NULL OR night < %(end)s)
  AND (%(level)s::text IS NULL OR CASE %(level)s WHEN 'commune' THEN commune
       WHEN 'district' THEN district WHEN 'site' THEN site WHEN 'cabinet' THEN cabinet
       WHEN 'lamp' THEN device_id END = %(name)s)
"""


def by_cause(*, conn: psycopg.Connection, tenant: str, level: str | None, name: str | None,
             start: date | None, end: date | None) -> list[dict[str, Any]]:
    """Saving per cause over the nights [start, end) of an area (the tenant when `level` is None):
    rows `{cause, kwh, eur, kg_co2, lamp_nights, priced_lamp_nights}`; `eur` None when no night was priced."""
    if level is not None and level not in AREAS:
        raise ValueError(f"unknown area {level!r}; use one of {', '.join(AREAS)}")
    row = conn.execute(_BY_CAUSE, {"tenant": tenant, "level": level, "name": name,
                                   "start": start, "end": end}).fetchone()
    if row is None or not row[12]:
        return []
    n = len(CAUSES)
    return [{"cause": cause, "kwh": (row[i] or 0.0) / 1000,
             "eur": None if not row[13] else (row[n + i] or 0.0) / 1000,
             "kg_co2": (row[2 * n + i] or 0.0) / 1000, "lamp_nights": row[12],
             "priced_lamp_nights": row[13]} for i, cause in enumerate(CAUSES)]
