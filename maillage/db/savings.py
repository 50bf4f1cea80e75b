"""Savings: tariffs, emission factors, imported outdoor temperatures, metered savings projects
and their results, and the per-area savings summary (`GET /v1/savings`, the monthly report).

Synchronous functions: the savings job and the CLI call them directly, the API in a worker
thread on its synchronous pool. The ASHRAE Guideline 14 uncertainty of any window of reporting
days is computed here in SQL from the fit statistics the job stored (the same formula as
opendsm's `ReportingMetrics` for daily models; see `processors/savings/metered.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from maillage.db import lighting_savings, rollups

LEVELS = ("commune", "district", "site")
LOCK_CLASS = 0x5356  # advisory lock keys (LOCK_CLASS, project id): one computation at a time


class ProjectConflict(ValueError):
    """A project of that name exists already in the tenant."""


# -- tariffs and factors ------------------------------------------------------------------------

_TARIFF_COLS = ("id", "tenant_id", "valid_from", "base_eur_kwh", "peak_eur_kwh", "offpeak_eur_kwh",
                "offpeak_hours", "source", "created_at")
_FACTOR_COLS = ("id", "tenant_id", "valid_from", "kg_co2_per_kwh", "source", "created_at")


def set_tariff(*, conn: psycopg.Connection, tenant: str, valid_from: date,
               base_eur_kwh: float | None = None, peak_eur_kwh: float | None = None,
               offpeak_eur_kwh: float | None = None, offpeak_hours: str | None = None,
               source: str | None = None) -> int:
    """Create (or replace, same tenant and date) the tariff in force from `valid_from`; its id."""
    row = conn.execute(
        "INSERT INTO savings_tariffs (tenant_id, valid_from, base_eur_kwh, peak_eur_kwh, "
        "offpeak_eur_kwh, offpeak_hours, source) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (tenant_id, valid_from) DO UPDATE SET base_eur_kwh = EXCLUDED.base_eur_kwh, "
        "peak_eur_kwh = EXCLUDED.peak_eur_kwh, offpeak_eur_kwh = EXCLUDED.offpeak_eur_kwh, "
        "offpeak_hours = EXCLUDED.offpeak_hours, source = EXCLUDED.source, created_at = now() "
        "RETURNING id",
        (tenant, valid_from, base_eur_kwh, peak_eur_kwh, offpeak_eur_kwh, offpeak_hours, source),
    ).fetchone()
    assert row is not None
    return int(row[0])


def list_tariffs(*, conn: psycopg.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """Tariffs of a tenant (every tenant when None), by tenant and date."""
    rows = conn.execute(
        f"SELECT {', '.join(_TARIFF_COLS)} FROM savings_tariffs "
        "WHERE %(t)s::text IS NULL OR tenant_id = %(t)s ORDER BY tenant_id, valid_from",
        {"t": tenant}).fetchall()
    return [dict(zip(_TARIFF_COLS, r, strict=True)) for r in rows]


def set_factor(*, conn: psycopg.Connection, tenant: str, valid_from: date, kg_co2_per_kwh: float,
               source: str) -> int:
    """Create (or replace) the emission factor in force from `valid_from`; its id."""
    row = conn.execute(
        "INSERT INTO savings_emission_factors (tenant_id, valid_from, kg_co2_per_kwh, source) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, valid_from) DO UPDATE SET "
        "kg_co2_per_kwh = EXCLUDED.kg_co2_per_kwh, source = EXCLUDED.source, created_at = now() "
        "RETURNING id", (tenant, valid_from, kg_co2_per_kwh, source)).fetchone()
    assert row is not None
    return int(row[0])


def list_factors(*, conn: psycopg.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """Emission factors of a tenant (every tenant when None), by tenant and date."""
    rows = conn.execute(
        f"SELECT {', '.join(_FACTOR_COLS)} FROM savings_emission_factors "
        "WHERE %(t)s::text IS NULL OR tenant_id = %(t)s ORDER BY tenant_id, valid_from",
        {"t": tenant}).fetchall()
    return [dict(zip(_FACTOR_COLS, r, strict=True)) for r in rows]


# -- outdoor temperature --------------------------------------------------------------------------

def import_weather(*, conn: psycopg.Connection, tenant: str, station: str,
                   rows: Sequence[tuple[datetime, float]]) -> int:
    """Store a station's temperatures (°C) in one transaction; a time already stored takes the
    new value. Returns the rows inserted or changed."""
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE weather_stage (ts timestamptz NOT NULL, "
                     "temperature_c double precision NOT NULL) ON COMMIT DROP")
        with conn.cursor().copy("COPY weather_stage (ts, temperature_c) FROM STDIN") as copy:
            for ts, value in rows:
                copy.write_row((ts, value))
        cur = conn.execute(
            "INSERT INTO weather_readings (tenant_id, station, ts, temperature_c) "
            "SELECT DISTINCT ON (ts) %s, %s, ts, temperature_c FROM weather_stage ORDER BY ts "
            "ON CONFLICT (tenant_id, station, ts) DO UPDATE SET "
            "temperature_c = EXCLUDED.temperature_c, imported_at = now() "
            "WHERE weather_readings.temperature_c <> EXCLUDED.temperature_c",
            (tenant, station))
        return cur.rowcount


def list_stations(*, conn: psycopg.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """Imported stations: readings, first and last time."""
    rows = conn.execute(
        "SELECT tenant_id, station, count(*), min(ts), max(ts) FROM weather_readings "
        "WHERE %(t)s::text IS NULL OR tenant_id = %(t)s GROUP BY 1, 2 ORDER BY 1, 2",
        {"t": tenant}).fetchall()
    return [{"tenant": r[0], "station": r[1], "readings": r[2], "first": r[3], "last": r[4]}
            for r in rows]


# -- projects -------------------------------------------------------------------------------------

_PROJECT_SELECT = """
SELECT p.id, p.tenant_id, p.name, m.device_id, p.metric, p.baseline_start, p.baseline_end,
       p.reporting_start, p.reporting_end, td.device_id, p.temperature_station, p.created_at,
       p.created_by, r.status, r.message, r.computed_at, r.reporting_days, r.avoided_kwh,
       r.uncertainty_kwh, r.confidence
FROM savings_projects p
JOIN devices m ON m.pk = p.device_pk
LEFT JOIN devices td ON td.pk = p.temperature_device_pk
LEFT JOIN savings_metered_results r ON r.project_id = p.id
"""
_PROJECT_COLS = ("id", "tenant", "name", "meter", "metric", "baseline_start", "baseline_end",
                 "reporting_start", "reporting_end", "temperature_device", "temperature_station",
                 "created_at", "created_by", "status", "message", "computed_at", "reporting_days",
                 "avoided_kwh", "uncertainty_kwh", "confidence")


def _device(conn: psycopg.Connection, tenant: str, device_id: str) -> tuple[int, str]:
    row = conn.execute("SELECT pk, type FROM devices WHERE tenant_id = %s AND device_id = %s",
                       (tenant, device_id)).fetchone()
    if row is None:
        raise LookupError(f"no device {device_id!r} in tenant {tenant!r}")
    return int(row[0]), str(row[1])


def add_project(*, conn: psycopg.Connection, tenant: str, name: str, meter: str,
                baseline_start: date, baseline_end: date, reporting_start: date,
                reporting_end: date | None, temperature_device: str | None = None,
                temperature_station: str | None = None, metric: str = "energy_import_wh",
                created_by: str | None = None) -> dict[str, Any]:
    """Create a metered savings project. LookupError: unknown meter or device; ValueError: bad
    periods, a device of the wrong type, or no / two temperature sources; ProjectConflict."""
    if not baseline_start < baseline_end <= reporting_start:
        raise ValueError("periods: baseline_start < baseline_end <= reporting_start")
    if reporting_end is not None and reporting_end <= reporting_start:
        raise ValueError("periods: reporting_end must be after reporting_start")
    if (temperature_device is None) == (temperature_station is None):
        raise ValueError("give one temperature source: a device or an imported station")
    if not metric.startswith("energy_") or not metric.endswith("_wh"):
        raise ValueError(f"metric {metric!r}: an energy index (energy_*_wh)")
    meter_pk, meter_type = _device(conn, tenant, meter)
    if meter_type != "meter":
        raise ValueError(f"device {meter!r} is a {meter_type}, not a meter")
    temp_pk = None
    if temperature_device is not None:
        temp_pk, temp_type = _device(conn, tenant, temperature_device)
        if temp_type.startswith("care_"):  # care data never feeds an energy computation
            raise ValueError(f"device {temperature_device!r} is a care device")
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO savings_projects (tenant_id, name, device_pk, metric, baseline_start, "
                "baseline_end, reporting_start, reporting_end, temperature_device_pk, "
                "temperature_station, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING id",
                (tenant, name, meter_pk, metric, baseline_start, baseline_end, reporting_start,
                 reporting_end, temp_pk, temperature_station, created_by)).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise ProjectConflict(f"a project named {name!r} exists in tenant {tenant!r}") from exc
    assert row is not None
    return get_project(conn=conn, project_id=int(row[0]))


def get_project(*, conn: psycopg.Connection, project_id: int) -> dict[str, Any]:
    """One project with its last result's status."""
    row = conn.execute(_PROJECT_SELECT + " WHERE p.id = %s", (project_id,)).fetchone()
    if row is None:
        raise LookupError(f"no savings project {project_id}")
    return dict(zip(_PROJECT_COLS, row, strict=True))


def list_projects(*, conn: psycopg.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """Projects of a tenant (every tenant when None) with their last result's status."""
    rows = conn.execute(_PROJECT_SELECT + " WHERE %(t)s::text IS NULL OR p.tenant_id = %(t)s "
                        "ORDER BY p.tenant_id, p.id", {"t": tenant}).fetchall()
    return [dict(zip(_PROJECT_COLS, r, strict=True)) for r in rows]


_JOB_COLS = ("id", "tenant", "tz", "device_pk", "metric", "baseline_start", "baseline_end",
             "reporting_start", "reporting_end", "temperature_device_pk", "temperature_station",
             "fingerprint")


def projects_for_job(*, conn: psycopg.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """What the savings job needs of each project (and the fingerprint of its last result)."""
    rows = conn.execute(
        "SELECT p.id, p.tenant_id, t.timezone, p.device_pk, p.metric, p.baseline_start, "
        "p.baseline_end, p.reporting_start, p.reporting_end, p.temperature_device_pk, "
        "p.temperature_station, r.fingerprint FROM savings_projects p "
        "JOIN tenants t ON t.id = p.tenant_id "
        "LEFT JOIN savings_metered_results r ON r.project_id = p.id "
        "WHERE %(t)s::text IS NULL OR p.tenant_id = %(t)s ORDER BY p.id", {"t": tenant}).fetchall()
    return [dict(zip(_JOB_COLS, r, strict=True)) for r in rows]


def _local(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(), ZoneInfo(tz))


def fingerprint(*, conn: psycopg.Connection, project: dict[str, Any], end: date) -> str:
    """A digest of everything a project's result depends on: its definition, the meter's and the
    temperature's stored rows (count, last received) over its periods, the tenant's tariffs and
    factors. The job recomputes a project only when this changed."""
    start = _local(project["baseline_start"], project["tz"])
    stop = _local(end, project["tz"])
    pad = timedelta(days=1)
    meter = conn.execute(
        "SELECT count(*), max(r.received_at) FROM readings r JOIN metrics m ON m.id = r.metric_id "
        "WHERE r.device_pk = %s AND m.name = %s AND r.ts >= %s AND r.ts <= %s",
        (project["device_pk"], project["metric"], start - pad, stop + pad)).fetchone()
    if project["temperature_station"] is not None:
        temp = conn.execute(
            "SELECT count(*), max(imported_at) FROM weather_readings WHERE tenant_id = %s "
            "AND station = %s AND ts >= %s AND ts < %s",
            (project["tenant"], project["temperature_station"], start - pad, stop + pad)).fetchone()
    else:
        temp = conn.execute(
            "SELECT count(*), max(r.received_at) FROM readings r JOIN metrics m ON m.id = r.metric_id "
            "WHERE r.device_pk = %s AND m.name = 'temperature_c' AND r.ts >= %s AND r.ts < %s",
            (project["temperature_device_pk"], start - pad, stop + pad)).fetchone()
    prices = conn.execute(
        "SELECT (SELECT count(*) || '/' || coalesce(max(created_at)::text, '') FROM savings_tariffs "
        " WHERE tenant_id = %(t)s), (SELECT count(*) || '/' || coalesce(max(created_at)::text, '') "
        " FROM savings_emission_factors WHERE tenant_id = %(t)s)", {"t": project["tenant"]}).fetchone()
    key = repr((sorted((k, str(v)) for k, v in project.items() if k != "fingerprint"), str(end),
                meter, temp, prices))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def daily_energy_kwh(*, conn: psycopg.Connection, device_pk: int, metric: str, tz: str,
                     start: date, end: date) -> dict[date, float]:
    """kWh per local day in [start, end) from the meter's index (the daily rollups, refreshed
    first: the energy between the index at each local midnight, interpolated where needed).
    Only days strictly between the first and the last day holding a reading: those two are
    partial (bounds from the daily rollups, which outlive the raw readings)."""
    rollups.refresh_devices(conn, [device_pk])
    rows = conn.execute(
        "WITH d AS (SELECT r.bucket, r.energy, r.n FROM rollup_1d r "
        " JOIN metrics m ON m.id = r.metric_id WHERE r.device_pk = %(pk)s AND m.name = %(metric)s), "
        "span AS (SELECT min(bucket) AS lo, max(bucket) AS hi FROM d WHERE n > 0) "
        "SELECT (d.bucket AT TIME ZONE %(tz)s)::date, d.energy FROM d CROSS JOIN span "
        "WHERE d.bucket >= %(start)s AND d.bucket < %(end)s AND d.energy IS NOT NULL "
        "AND d.bucket > span.lo AND d.bucket < span.hi",
        {"tz": tz, "pk": device_pk, "metric": metric, "start": _local(start, tz),
         "end": _local(end, tz)}).fetchall()
    return {d: e / 1000.0 for d, e in rows}


def temperatures_c(*, conn: psycopg.Connection, project: dict[str, Any], start: date,
                   end: date) -> list[tuple[datetime, float]]:
    """Outdoor temperatures of a project's source over [start, end) local days, padded by a day."""
    lo = _local(start, project["tz"]) - timedelta(days=1)
    hi = _local(end, project["tz"]) + timedelta(days=1)
    if project["temperature_station"] is not None:
        rows = conn.execute(
            "SELECT ts, temperature_c FROM weather_readings WHERE tenant_id = %s AND station = %s "
            "AND ts >= %s AND ts < %s ORDER BY ts",
            (project["tenant"], project["temperature_station"], lo, hi)).fetchall()
    else:
        rows = conn.execute(
            "SELECT r.ts, r.value FROM readings r JOIN metrics m ON m.id = r.metric_id "
            "WHERE r.device_pk = %s AND m.name = 'temperature_c' AND r.ts >= %s AND r.ts < %s "
            "ORDER BY r.ts", (project["temperature_device_pk"], lo, hi)).fetchall()
    return [(ts, float(v)) for ts, v in rows]


@contextmanager
def project_lock(*, conn: psycopg.Connection, project_id: int) -> Iterator[bool]:
    """Try to hold a project for computing (session lock, released on exit): False when another
    savings process is computing it now."""
    key = (LOCK_CLASS, project_id % 2**31)
    row = conn.execute("SELECT pg_try_advisory_lock(%s::int4, %s::int4)", key).fetchone()
    got = bool(row and row[0])
    try:
        yield got
    finally:
        if got:
            conn.execute("SELECT pg_advisory_unlock(%s::int4, %s::int4)", key)


def store_result(*, conn: psycopg.Connection, project_id: int, fingerprint: str, status: str,
                 method: str, message: str | None = None, stats: dict[str, Any] | None = None,
                 days: Sequence[tuple[Any, ...]] = ()) -> None:
    """Replace a project's result and days in one transaction. `stats`: baseline_days, n,
    n_prime, cvrmse_adj, t_stat, confidence, reporting_days, observed_kwh, predicted_kwh,
    avoided_kwh, uncertainty_kwh, model; `days`: (day, observed_kwh, predicted_kwh, avoided_kwh,
    eur, kg_co2, tariff_id, factor_id, factor_source)."""
    s = dict(stats or {})
    if "model" in s:
        s["model"] = Jsonb(s["model"])
    cols = ("baseline_days", "n", "n_prime", "cvrmse_adj", "t_stat", "confidence",
            "reporting_days", "observed_kwh", "predicted_kwh", "avoided_kwh", "uncertainty_kwh",
            "model")
    with conn.transaction():
        conn.execute("DELETE FROM savings_metered_days WHERE project_id = %s", (project_id,))
        conn.execute("DELETE FROM savings_metered_results WHERE project_id = %s", (project_id,))
        conn.execute(
            f"INSERT INTO savings_metered_results (project_id, fingerprint, status, message, method, "
            f"{', '.join(cols)}) VALUES (%s, %s, %s, %s, %s, {', '.join(['%s'] * len(cols))})",
            (project_id, fingerprint, status, message, method, *(s.get(c) for c in cols)))
        if days:
            with conn.cursor().copy(
                    "COPY savings_metered_days (project_id, day, observed_kwh, predicted_kwh, "
                    "avoided_kwh, eur, kg_co2, tariff_id, factor_id, factor_source) FROM STDIN") as cp:
                for d in days:
                    cp.write_row((project_id, *d))


# -- the savings summary ----------------------------------------------------------------------------

# Per project, over the reporting days in the window: sums, and the ASHRAE Guideline 14
# uncertainty of those m days (opendsm's ReportingMetrics, daily: the Sun & Baltazar factor of
# the number M of distinct calendar months, times |mean predicted x CV(RMSE) adj| x t x
# sqrt(n/n' (1 + 2/n') m)).
_METERED = """
WITH w AS (
    SELECT d.project_id, count(*) AS m, count(DISTINCT extract(month FROM d.day)) AS months,
           sum(d.observed_kwh) AS obs, sum(d.predicted_kwh) AS pred, sum(d.avoided_kwh) AS avoided,
           sum(d.eur) AS eur, count(d.eur) AS priced, sum(d.kg_co2) AS co2,
           min(d.day) AS first_day, max(d.day) AS last_day,
           string_agg(DISTINCT d.factor_source, ' | ') AS factor_sources
    FROM savings_metered_days d JOIN savings_projects p ON p.id = d.project_id
    WHERE p.tenant_id = %(tenant)s
      AND (%(start)s::date IS NULL OR d.day >= %(start)s) AND (%(end)s::date IS NULL OR d.day < %(end)s)
    GROUP BY d.project_id)
SELECT p.id, p.name, dev.device_id, dev.commune, dev.district, dev.site, r.status, r.message,
       r.method, r.computed_at, coalesce(w.m, 0), w.obs, w.pred, coalesce(w.avoided, 0),
       w.eur, coalesce(w.priced, 0), coalesce(w.co2, 0), w.first_day, w.last_day,
       CASE WHEN w.m > 0 AND r.n_prime > 0 THEN
           (-0.00024 * w.months ^ 2 + 0.03535 * w.months + 1.00286)
           * abs(w.pred / w.m * r.cvrmse_adj) * r.t_stat
           * sqrt(r.n / r.n_prime * (1 + 2 / r.n_prime) * w.m) END,
       r.confidence, p.baseline_start, p.baseline_end, p.reporting_start, p.reporting_end,
       w.factor_sources
FROM savings_projects p
JOIN devices dev ON dev.pk = p.device_pk
LEFT JOIN savings_metered_results r ON r.project_id = p.id
LEFT JOIN w ON w.project_id = p.id
WHERE p.tenant_id = %(tenant)s
  AND (%(level)s::text IS NULL OR CASE %(level)s WHEN 'commune' THEN dev.commune
       WHEN 'district' THEN dev.district WHEN 'site' THEN dev.site END = %(name)s)
ORDER BY p.id
"""
_METERED_COLS = ("id", "name", "meter", "commune", "district", "site", "status", "message",
                 "method", "computed_at", "days", "observed_kwh", "predicted_kwh", "kwh", "eur",
                 "priced_days", "kg_co2", "first_day", "last_day", "uncertainty_kwh",
                 "confidence", "baseline_start", "baseline_end", "reporting_start", "reporting_end",
                 "factor_sources")


def metered_summary(*, conn: psycopg.Connection, tenant: str, level: str | None,
                    name: str | None, start: date | None, end: date | None) -> list[dict[str, Any]]:
    """Metered savings per project of an area (the whole tenant when `level` is None) over the
    local days [start, end): kWh avoided, €, kg CO2, and the uncertainty of that window."""
    if level is not None and level not in LEVELS:
        raise ValueError(f"area: one of {', '.join(LEVELS)}")
    rows = conn.execute(_METERED, {"tenant": tenant, "level": level, "name": name,
                                   "start": start, "end": end}).fetchall()
    return [dict(zip(_METERED_COLS, r, strict=True)) for r in rows]


def lighting_summary(*, conn: psycopg.Connection, tenant: str, level: str | None,
                     name: str | None, start: date | None, end: date | None) -> list[dict[str, Any]]:
    """Lighting savings by cause over [start, end) (`db.lighting_savings.by_cause`): rows
    {cause, kwh, eur, kg_co2, …}, none when the area has no lamp-night."""
    return lighting_savings.by_cause(conn=conn, tenant=tenant, level=level, name=name,
                                     start=start, end=end)


def tenant_timezone(*, conn: psycopg.Connection, tenant: str) -> str:
    """The tenant's zone; LookupError for an unknown tenant."""
    row = conn.execute("SELECT timezone FROM tenants WHERE id = %s", (tenant,)).fetchone()
    if row is None:
        raise LookupError(f"no tenant {tenant!r}")
    return str(row[0])


def tenant_prices(*, conn: psycopg.Connection, tenant: str
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tariffs, factors) of a tenant, for pricing."""
    return list_tariffs(conn=conn, tenant=tenant), list_factors(conn=conn, tenant=tenant)
