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
# System power / nominal power: ballast losses of discharge lamps (an LED lantern's rated power
# includes its driver). Shared by the computation and the retrofit "what if" (`db.retrofit`).
BALLAST = {"LED": 1.0, "HPS": 1.12, "SHP": 1.12, "MH": 1.1, "IM": 1.1, "MBF": 1.1, "HG": 1.1,
           "LPS": 1.1, "SBP": 1.1, "FLUO": 1.1, "CFL": 1.1}
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


Series = list[tuple[datetime, float | None, float | None, float | None]]
"""(ts, lamp_power_w, dimming_pct, energy_import_wh) by time."""


def lamp_series(conn: psycopg.Connection, *, device_pks: Sequence[int], start: datetime,
                end: datetime) -> dict[int, Series]:
    """The lamps' power, level and energy readings in (start, end], per lamp, by time."""
    ids: dict[str, int] = {r[1]: r[0] for r in conn.execute(
        "SELECT id, name FROM metrics WHERE name = ANY (%s)", (list(LAMP_METRICS),)).fetchall()}
    out: dict[int, Series] = {pk: [] for pk in device_pks}
    if not ids or not device_pks:
        return out
    rows = conn.execute(
        "SELECT device_pk, ts, max(value) FILTER (WHERE metric_id = %(p)s), "
        "       max(value) FILTER (WHERE metric_id = %(l)s), "
        "       max(value) FILTER (WHERE metric_id = %(e)s) "
        "FROM readings WHERE device_pk = ANY (%(pks)s) AND metric_id = ANY (%(ids)s) "
        "  AND ts > %(start)s AND ts <= %(end)s "
        "GROUP BY device_pk, ts ORDER BY device_pk, ts",
        {"p": ids.get("lamp_power_w"), "l": ids.get("dimming_pct"),
         "e": ids.get("energy_import_wh"), "pks": list(device_pks), "ids": list(ids.values()),
         "start": start, "end": end}).fetchall()
    for pk, ts, power, level, energy in rows:
        out[pk].append((ts, power, level, energy))
    return out


_SPAN = """
SELECT min(f.ts), max(l.ts)
FROM devices d, metrics m,
     LATERAL (SELECT ts FROM readings r WHERE r.device_pk = d.pk AND r.metric_id = m.id
              ORDER BY ts LIMIT 1) f,
     LATERAL (SELECT ts FROM readings r WHERE r.device_pk = d.pk AND r.metric_id = m.id
              ORDER BY ts DESC LIMIT 1) l
WHERE d.tenant_id = %s AND d.type = 'streetlight' AND m.name = 'lamp_power_w'
"""


def reading_span(conn: psycopg.Connection, *, tenant_id: str) -> tuple[datetime, datetime] | None:
    """First and last `lamp_power_w` times of the tenant's streetlights (None without any); two
    index look-ups per lamp."""
    row = conn.execute(_SPAN, (tenant_id,)).fetchone()
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


def system_power_w(tech: str, nominal_w: float) -> float:
    """Electrical power at full level: nominal power plus ballast losses."""
    return nominal_w * BALLAST.get(tech.upper(), 1.0)
