"""Open data reads: monthly consumption per commune, the streetlight inventory, NGSI-LD entities.

Only public, non-personal data leaves here: public lighting (`streetlight` devices), public
buildings (meters for which `maillage_public_building(meta, dwelling)` holds, migration 0020),
and residential meters only summed per commune and month over at least `min_households` meters.
No query here reads a care device: each one names the device types it reads.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

Dataset = Literal["lighting", "public_buildings", "residential"]

# Which devices each monthly dataset sums (constant SQL, never user input).
_DEVICES: dict[Dataset, str] = {
    "lighting": "d.type = 'streetlight'",
    "public_buildings": "d.type = 'meter' AND maillage_public_building(d.meta, d.dwelling)",
    "residential": "d.type = 'meter' AND NOT maillage_public_building(d.meta, d.dwelling)",
}

_MONTHLY = """
SELECT d.commune, to_char(r.bucket AT TIME ZONE t.timezone, 'YYYY-MM') AS month,
       maillage_bucket_end(r.bucket, '1mo', t.timezone) <= now() AS complete,
       sum(r.energy) / 1000.0 AS energy_kwh, count(DISTINCT d.pk) AS devices
FROM rollup_1mo r
JOIN metrics m ON m.id = r.metric_id AND m.name = 'energy_import_wh'
JOIN devices d ON d.pk = r.device_pk
JOIN tenants t ON t.id = d.tenant_id
WHERE d.tenant_id = %(tenant)s AND {devices} AND d.commune IS NOT NULL AND r.energy IS NOT NULL
  AND (%(commune)s::text IS NULL OR d.commune = %(commune)s)
  AND (%(start)s::text IS NULL OR to_char(r.bucket AT TIME ZONE t.timezone, 'YYYY-MM') >= %(start)s)
  AND (%(end)s::text IS NULL OR to_char(r.bucket AT TIME ZONE t.timezone, 'YYYY-MM') <= %(end)s)
GROUP BY d.commune, r.bucket, t.timezone
HAVING count(DISTINCT d.pk) >= %(min_devices)s
ORDER BY d.commune, r.bucket
"""


async def tenant_publishes(*, conn: psycopg.AsyncConnection, tenant: str) -> bool | None:
    """Whether a tenant opted in to anonymous open data; None when there is no such tenant."""
    cur = await conn.execute("SELECT opendata_public FROM tenants WHERE id = %s", (tenant,))
    row = await cur.fetchone()
    return None if row is None else bool(row[0])


def set_public(*, conn: psycopg.Connection, tenant: str, public: bool) -> bool:
    """Opt a tenant in (or out) of anonymous open data; False when there is no such tenant."""
    cur = conn.execute("UPDATE tenants SET opendata_public = %s WHERE id = %s", (public, tenant))
    return cur.rowcount == 1


async def monthly_consumption(*, conn: psycopg.AsyncConnection, dataset: Dataset, tenant: str,
                              commune: str | None, start: str | None, end: str | None,
                              min_households: int) -> list[dict[str, Any]]:
    """kWh per commune and local month (`YYYY-MM`, between `start` and `end` inclusive) of one
    dataset, from the monthly device rollups of `energy_import_wh`; `devices` is how many devices
    had data. Residential groups of fewer than `min_households` meters are left out."""
    query = sql.SQL(_MONTHLY).format(devices=sql.SQL(_DEVICES[dataset]))
    params = {"tenant": tenant, "commune": commune, "start": start, "end": end,
              "min_devices": min_households if dataset == "residential" else 1}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


_NOMINAL = ("CASE WHEN jsonb_typeof(d.meta -> 'nominal_power_w') = 'number' "
            "THEN (d.meta ->> 'nominal_power_w')::double precision END")


async def streetlights(*, conn: psycopg.AsyncConnection, tenant: str,
                       commune: str | None) -> list[dict[str, Any]]:
    """The streetlight inventory: registry facts only (no readings), by commune and id."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT d.device_id, d.commune, d.district, d.site AS street, d.lat, d.lon, "
            "d.meta ->> 'lamp_tech' AS lamp_tech, "
            f"{_NOMINAL} AS nominal_power_w, d.meta ->> 'cabinet' AS cabinet, "
            "d.installed_at, d.status "
            "FROM devices d WHERE d.tenant_id = %(tenant)s AND d.type = 'streetlight' "
            "AND (%(commune)s::text IS NULL OR d.commune = %(commune)s) "
            "ORDER BY d.commune NULLS LAST, d.device_id",
            {"tenant": tenant, "commune": commune})
        return await cur.fetchall()


ENTITY_TYPES = ("streetlight", "lighting_cabinet")
"""Device types the NGSI-LD view serves (never anything else)."""
LAST_METRICS = ("lamp_on", "dimming_pct", "lamp_power_w", "active_power_w", "energy_import_wh")
"""Metrics whose latest reading the NGSI-LD entities show."""

# The Smart Data Models require a location: equipment registered without one is left out (the
# streetlight inventory export lists it, with a null geometry).
_ENTITY_WHERE = ("d.tenant_id = %(tenant)s AND d.type = ANY (%(types)s) "
                 "AND d.lat IS NOT NULL AND d.lon IS NOT NULL "
                 "AND (%(ids)s::text[] IS NULL OR d.device_id = ANY (%(ids)s))")


async def lighting_entities(*, conn: psycopg.AsyncConnection, tenant: str, types: list[str],
                            ids: list[str] | None, limit: int,
                            offset: int) -> list[dict[str, Any]]:
    """Located streetlights and cabinets (types among ENTITY_TYPES): registry facts, whether a lamp
    failure is open, the number of lamps a cabinet feeds, and `last`: {metric: [value, ts]} of
    LAST_METRICS; ordered by type then id."""
    wanted = [t for t in types if t in ENTITY_TYPES]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT d.type, d.device_id, d.commune, d.district, d.site AS street, d.lat, d.lon, "
            f"d.installed_at, d.status, d.meta ->> 'cabinet' AS cabinet, {_NOMINAL} AS "
            "nominal_power_w, EXISTS (SELECT 1 FROM anomalies a WHERE a.tenant_id = d.tenant_id "
            "  AND a.device_id = d.device_id AND a.kind = 'lamp_failure' AND a.end_ts IS NULL) "
            "  AS lamp_failure, "
            "(SELECT count(*) FROM devices l WHERE d.type = 'lighting_cabinet' "
            "  AND l.tenant_id = d.tenant_id AND l.type = 'streetlight' "
            "  AND l.meta ->> 'cabinet' = d.device_id) AS lamps, "
            "(SELECT jsonb_object_agg(m.name, jsonb_build_array(x.value, x.ts)) FROM metrics m "
            "  CROSS JOIN LATERAL (SELECT r.value, r.ts FROM readings r WHERE r.device_pk = d.pk "
            "    AND r.metric_id = m.id ORDER BY r.ts DESC LIMIT 1) x "
            "  WHERE m.name = ANY (%(metrics)s)) AS last "
            f"FROM devices d WHERE {_ENTITY_WHERE} "
            "ORDER BY d.type DESC, d.device_id LIMIT %(limit)s OFFSET %(offset)s",
            {"tenant": tenant, "types": wanted, "ids": ids, "metrics": list(LAST_METRICS),
             "limit": limit, "offset": offset})
        return await cur.fetchall()


async def count_lighting_entities(*, conn: psycopg.AsyncConnection, tenant: str,
                                  types: list[str], ids: list[str] | None) -> int:
    """How many entities `lighting_entities` would list without limit and offset."""
    cur = await conn.execute(
        f"SELECT count(*) FROM devices d WHERE {_ENTITY_WHERE}",
        {"tenant": tenant, "types": [t for t in types if t in ENTITY_TYPES], "ids": ids})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def lighting_savings_monthly(*, conn: psycopg.AsyncConnection, tenant: str,
                                   commune: str | None, start: str | None,
                                   end: str | None) -> list[dict[str, Any]]:
    """Lighting savings per commune and month (of the nights, `YYYY-MM`) from the lamp-night rows
    of `lighting_savings` (migration 0017): reference, measured and saved kWh, saved by cause,
    saved euros (None when a night had no tariff) and kg CO2."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT commune, to_char(night, 'YYYY-MM') AS month, "
            "count(DISTINCT device_id) AS devices, sum(reference_wh) / 1000.0 AS reference_kwh, "
            "sum(measured_wh) / 1000.0 AS measured_kwh, "
            "sum(reference_wh - measured_wh) / 1000.0 AS saved_kwh, "
            "sum(led_retrofit_wh) / 1000.0 AS led_retrofit_kwh, "
            "sum(dimming_wh) / 1000.0 AS dimming_kwh, sum(switch_off_wh) / 1000.0 AS "
            "switch_off_kwh, sum(presence_wh) / 1000.0 AS presence_kwh, "
            "sum(other_wh) / 1000.0 AS other_kwh, "
            # Priced per night when computed; a month with an unpriced night has no euro figure.
            "CASE WHEN bool_and(eur_per_kwh IS NOT NULL) THEN "
            "  sum((reference_wh - measured_wh) / 1000.0 * eur_per_kwh) END AS saved_eur, "
            "sum((reference_wh - measured_wh) / 1000.0 * kg_co2_per_kwh) AS saved_kg_co2, "
            "(date_trunc('month', max(night)) + interval '1 month')::date <= current_date "
            "  AS complete "
            "FROM lighting_savings WHERE tenant_id = %(tenant)s AND commune IS NOT NULL "
            "AND (%(commune)s::text IS NULL OR commune = %(commune)s) "
            "AND (%(start)s::text IS NULL OR to_char(night, 'YYYY-MM') >= %(start)s) "
            "AND (%(end)s::text IS NULL OR to_char(night, 'YYYY-MM') <= %(end)s) "
            "GROUP BY commune, to_char(night, 'YYYY-MM') ORDER BY commune, month",
            {"tenant": tenant, "commune": commune, "start": start, "end": end})
        return await cur.fetchall()
