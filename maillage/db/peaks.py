"""Load curves, peaks over the subscribed or contracted power, and what to do about them.

The curve of a meter, a building, a site, a district or a commune is the mean power of each
15-minute bucket, from the energy the rollups hold (`rollup_15m`, index `energy_import_wh`:
Wh x 4 = W), summed over the area's meters and lighting cabinets (streetlights are metered by
their cabinet, so they are not added again; care devices are never part of a curve). A peak is
a run of buckets above the limit: the contracted power given, else the sum of the meters'
subscribed powers (`meta.subscribed_power_va`, else their latest `subscribed_power_va` reading),
in VA turned into W with a power factor. Recommendations: dim the lighting circuits lit during a
peak when that sheds the excess, else shift the excess energy to the quietest hours of that day.
The pure parts (`find_peaks`, `recommend`) take plain lists and are tested on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from maillage.db import rollups

AREAS = {"meter": "device_id", "building": "building", "site": "site", "district": "district",
         "commune": "commune"}
LOAD_TYPES = ("meter", "lighting_cabinet")
BUCKET = timedelta(minutes=15)
DIM_LEVEL_PCT = 50.0
DIM_POWER_SHARE = 0.54
"""Power an LED circuit draws at 50 %: drivers keep ~8 % at zero, the rest scales (0.08 + 0.46)."""
MAX_SPAN = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket of a load curve: start, mean power (W) and the lighting cabinets' share."""

    at: datetime
    power_w: float
    lighting_w: float


def area_devices(conn: psycopg.Connection, *, tenant: str, area: str,
                 name: str) -> list[tuple[int, str, str]]:
    """(pk, device_id, type) of the meters and lighting cabinets of an area."""
    column = AREAS.get(area)
    if column is None:
        raise ValueError(f"unknown area {area!r}; use one of {', '.join(AREAS)}")
    types = ["meter"] if area == "meter" else list(LOAD_TYPES)
    rows = conn.execute(
        sql.SQL("SELECT pk, device_id, type FROM devices WHERE tenant_id = %s AND {} = %s "
                "AND type = ANY (%s) ORDER BY device_id").format(sql.Identifier(column)),
        (tenant, name, types)).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def load_curve(conn: psycopg.Connection, *, pks: Sequence[int], cabinets: Sequence[int],
               start: datetime, end: datetime) -> list[Point]:
    """Mean power per 15-minute bucket in [start, end) summed over `pks` (rollups refreshed)."""
    if not pks:
        return []
    rollups.refresh_devices(conn, pks)
    rows = conn.execute(
        "SELECT r.bucket, sum(r.energy) * 4, "
        "       coalesce(sum(r.energy) FILTER (WHERE r.device_pk = ANY (%(cab)s)), 0) * 4 "
        "FROM rollup_15m r JOIN metrics m ON m.id = r.metric_id "
        "WHERE r.device_pk = ANY (%(pks)s) AND m.name = 'energy_import_wh' "
        "  AND r.bucket >= %(start)s AND r.bucket < %(end)s AND r.energy IS NOT NULL "
        "GROUP BY r.bucket ORDER BY r.bucket",
        {"pks": list(pks), "cab": list(cabinets), "start": start, "end": end}).fetchall()
    return [Point(r[0], float(r[1]), float(r[2])) for r in rows]


def subscribed_va(conn: psycopg.Connection, *, pks: Sequence[int]) -> float | None:
    """Sum of the meters' subscribed powers (registry, else latest reading); None if none known."""
    rows = conn.execute(
        "SELECT d.pk, CASE WHEN jsonb_typeof(d.meta -> 'subscribed_power_va') IN ('number', 'string') "
        "  AND (d.meta ->> 'subscribed_power_va') ~ '^[0-9]+(\\.[0-9]+)?$' "
        "  THEN (d.meta ->> 'subscribed_power_va')::double precision END, "
        "  (SELECT r.value FROM readings r JOIN metrics m ON m.id = r.metric_id "
        "   WHERE r.device_pk = d.pk AND m.name = 'subscribed_power_va' "
        "   ORDER BY r.ts DESC LIMIT 1) "
        "FROM devices d WHERE d.pk = ANY (%s) AND d.type = 'meter'", (list(pks),)).fetchall()
    values = [meta if meta is not None else reading for _, meta, reading in rows]
    known = [v for v in values if v]
    return sum(known) if known else None


def find_peaks(curve: Sequence[Point], limit_w: float) -> list[dict[str, Any]]:
    """Runs of consecutive buckets above `limit_w`: start, end, duration, max and when, excess."""
    peaks: list[dict[str, Any]] = []
    run: list[Point] = []

    def close() -> None:
        if not run:
            return
        top = max(run, key=lambda p: p.power_w)
        peaks.append({
            "start": run[0].at, "end": run[-1].at + BUCKET,
            "duration_min": len(run) * BUCKET.total_seconds() / 60,
            "max_w": top.power_w, "max_at": top.at,
            "mean_w": sum(p.power_w for p in run) / len(run),
            "excess_w": top.power_w - limit_w,
            "excess_wh": sum(p.power_w - limit_w for p in run) * BUCKET.total_seconds() / 3600,
            "lighting_w": sum(p.lighting_w for p in run) / len(run),
        })
        run.clear()

    for p in curve:
        if p.power_w > limit_w and (not run or p.at - run[-1].at == BUCKET):
            run.append(p)
            continue
        close()
        if p.power_w > limit_w:
            run.append(p)
    close()
    return peaks


def quietest(curve: Sequence[Point], day_of: datetime, hours: int, tz: ZoneInfo) -> tuple[datetime, float] | None:
    """Start and mean power of the calmest `hours`-long stretch of the local day holding `day_of`."""
    day = day_of.astimezone(tz).date()
    same = [p for p in curve if p.at.astimezone(tz).date() == day]
    n = hours * 4
    if len(same) < n:
        return None
    best = min(range(len(same) - n + 1), key=lambda i: sum(p.power_w for p in same[i:i + n]))
    return same[best].at, sum(p.power_w for p in same[best:best + n]) / n


def recommend(peaks: Sequence[dict[str, Any]], curve: Sequence[Point], *, limit_w: float,
              cabinets: Sequence[str], tz: ZoneInfo) -> list[dict[str, Any]]:
    """One recommendation per peak: `dim` the lit lighting circuits when that sheds the excess,
    else `shift` the excess energy to the day's quietest stretch (with the dimming as a help)."""
    out: list[dict[str, Any]] = []
    for peak in peaks:
        shed = peak["lighting_w"] * (1 - DIM_POWER_SHARE)
        window = (f"{peak['start'].astimezone(tz):%Y-%m-%d %H:%M}-"
                  f"{peak['end'].astimezone(tz):%H:%M}")
        if shed > 0 and shed >= peak["excess_w"]:
            out.append({
                "action": "dim", "start": peak["start"], "end": peak["end"],
                "cabinets": list(cabinets), "level_pct": DIM_LEVEL_PCT, "shed_w": shed,
                "text": (f"Dim the lighting circuits ({', '.join(cabinets)}) to "
                         f"{DIM_LEVEL_PCT:.0f} % during {window}: about {shed:.0f} W shed, "
                         f"more than the {peak['excess_w']:.0f} W over the limit.")})
            continue
        hours = max(1, round(peak["duration_min"] / 60))
        calm = quietest(curve, peak["start"], hours, tz)
        rec: dict[str, Any] = {"action": "shift", "start": peak["start"], "end": peak["end"],
                               "energy_wh": peak["excess_wh"], "to": calm[0] if calm else None,
                               "shed_w": shed}
        text = f"Shift about {peak['excess_wh'] / 1000:.1f} kWh of flexible use out of {window}"
        if calm is not None:
            headroom = limit_w - calm[1]
            text += (f" to {calm[0].astimezone(tz):%H:%M} (mean {calm[1]:.0f} W then, "
                     f"{headroom:.0f} W below the limit)")
        if shed > 0:
            text += f"; dimming the lit lighting circuits to 50 % would shed about {shed:.0f} W"
        rec["text"] = text + "."
        out.append(rec)
    return out


def peaks(conn: psycopg.Connection, *, tenant: str, area: str, name: str, start: datetime,
          end: datetime, contracted_va: float | None, power_factor: float,
          curve_points: bool = True) -> dict[str, Any]:
    """The load curve of an area, its peaks over the limit, when they happen, recommendations."""
    if end <= start:
        raise ValueError("'to' must be after 'from'")
    if end - start > MAX_SPAN:
        raise ValueError("ask at most 366 days at once")
    if not 0 < power_factor <= 1:
        raise ValueError("power_factor must be in (0, 1]")
    row = conn.execute("SELECT timezone FROM tenants WHERE id = %s", (tenant,)).fetchone()
    if row is None:
        raise LookupError(f"no tenant {tenant!r}")
    tz = ZoneInfo(row[0])
    devices = area_devices(conn, tenant=tenant, area=area, name=name)
    if not devices:
        raise LookupError(f"no meter or lighting cabinet in {area} {name!r}")
    pks = [d[0] for d in devices]
    cab_pks = [d[0] for d in devices if d[2] == "lighting_cabinet"]
    cab_ids = [d[1] for d in devices if d[2] == "lighting_cabinet"]
    curve = load_curve(conn, pks=pks, cabinets=cab_pks, start=start, end=end)
    limit_va: float | None
    if contracted_va is not None:
        limit_va, source = contracted_va, "contracted"
    else:
        limit_va, source = subscribed_va(conn, pks=pks), "subscribed"
    top = max(curve, key=lambda p: p.power_w, default=None)
    doc: dict[str, Any] = {
        "tenant": tenant, "area": area, "name": name, "from": start, "to": end,
        "devices": len(devices), "lighting_cabinets": cab_ids,
        "limit_va": limit_va, "limit_source": source if limit_va is not None else None,
        "power_factor": power_factor,
        "limit_w": limit_va * power_factor if limit_va is not None else None,
        "max": {"power_w": top.power_w, "at": top.at} if top else None,
        "mean_w": sum(p.power_w for p in curve) / len(curve) if curve else None,
        "peaks": [], "minutes_over_by_hour": {}, "recommendations": [],
    }
    if curve_points:
        doc["curve"] = [{"bucket": p.at, "power_w": p.power_w, "lighting_w": p.lighting_w}
                        for p in curve]
    if limit_va is None:
        return doc
    limit_w = limit_va * power_factor
    found = find_peaks(curve, limit_w)
    by_hour: dict[str, float] = {}
    for p in curve:
        if p.power_w > limit_w:
            hour = f"{p.at.astimezone(tz).hour:02d}"
            by_hour[hour] = by_hour.get(hour, 0.0) + BUCKET.total_seconds() / 60
    doc["peaks"] = found
    doc["minutes_over_by_hour"] = dict(sorted(by_hour.items()))  # local hour of day
    doc["recommendations"] = recommend(found, curve, limit_w=limit_w, cabinets=cab_ids, tz=tz)
    return doc
