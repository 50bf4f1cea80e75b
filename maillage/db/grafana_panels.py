"""Every SQL text the Grafana dashboards run, in one place (the panel test finds them all here).

These strings are not run by maillage but by Grafana's PostgreSQL data source, as the
`grafana_reader` role (or a tenant's reader role), against the `grafana` schema of migrations
0009 and 0019 only. They live on the SQL floor (`db/`, tests/test_architecture.py) and are read
through `maillage.dashboards.queries`, which the dashboard builders import. They use Grafana's
macros (`$__timeFilter`, `$__timeGroupAlias`, `$__time`, `$__timeFrom()`: see
`dashboards/expand.py`) and the dashboard variables `${tenant:sqlstring}` and
`${commune:sqlstring}` (multi-valued; "All" is the custom value `'__all'`). Plain PostgreSQL and
TimescaleDB alike: no TimescaleDB function is spelled here (`$__timeGroup` becomes `time_bucket`
only when the data source says TimescaleDB). No SQL comments (recent Grafana strips them).
Labels are French, like the web page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Format = Literal["table", "time_series"]

TENANT = "${tenant:sqlstring}"
ALL_COMMUNES = "'__all'"
"""The commune variable's custom "All" value (inserted as is, hence quoted)."""

LIGHTING_KINDS = ("lamp_failure", "day_burner", "dimming_not_applied", "cabinet_overconsumption",
                  "burning_hours")


def in_communes(column: str) -> str:
    """The commune variable's filter on `column` ("All" also keeps rows without a commune)."""
    return f"({ALL_COMMUNES} IN (${{commune:sqlstring}}) OR {column} IN (${{commune:sqlstring}}))"


@dataclass(frozen=True)
class PanelQuery:
    """One panel's SQL; `main`: the panel must return rows on the demo data (tested)."""

    key: str
    sql: str
    format: Format = "table"
    main: bool = False


_METER_ENERGY = f"""
FROM grafana.rollup_15m r
JOIN grafana.devices d ON d.pk = r.device_pk
JOIN grafana.metrics m ON m.id = r.metric_id
WHERE d.tenant_id = {TENANT} AND d.type = 'meter' AND m.name = 'energy_import_wh'
  AND {in_communes('d.commune')}"""

_ALERT_DEVICE = """
LEFT JOIN grafana.devices d ON d.tenant_id = a.tenant_id AND d.device_id = a.device_id"""

QUERIES: dict[str, PanelQuery] = {q.key: q for q in (
    # -- variables ---------------------------------------------------------------------------
    PanelQuery("var_tenant", "SELECT id AS __value, name AS __text FROM grafana.tenants ORDER BY name"),
    PanelQuery("var_commune", f"""
SELECT commune FROM grafana.devices WHERE tenant_id = {TENANT} AND commune IS NOT NULL
UNION SELECT commune FROM grafana.care_devices WHERE tenant_id = {TENANT} AND commune IS NOT NULL
ORDER BY 1""", main=True),

    # -- territory overview --------------------------------------------------------------------
    PanelQuery("territory_devices", f"""
SELECT count(*) FILTER (WHERE d.status = 'online') AS "en ligne",
       count(*) FILTER (WHERE d.status = 'offline') AS "hors ligne",
       count(*) FILTER (WHERE d.status = 'unknown') AS "inconnu"
FROM grafana.devices d
WHERE d.tenant_id = {TENANT} AND {in_communes('d.commune')}""", main=True),
    PanelQuery("territory_open_alerts", f"""
SELECT a.severity AS "gravité", count(*) AS "alertes ouvertes"
FROM grafana.alerts a{_ALERT_DEVICE}
WHERE a.tenant_id = {TENANT} AND a.state <> 'resolved' AND {in_communes('d.commune')}
GROUP BY 1 ORDER BY 1""", main=True),
    PanelQuery("territory_today_vs_last_week", f"""
WITH day AS (
    SELECT date_trunc('day', now() AT TIME ZONE t.timezone) AT TIME ZONE t.timezone AS start
    FROM grafana.tenants t WHERE t.id = {TENANT})
SELECT round((sum(r.energy) FILTER (WHERE r.bucket >= day.start AND r.bucket < now()) / 1000)::numeric, 1)
           AS "aujourd'hui (kWh)",
       round((sum(r.energy) FILTER (WHERE r.bucket >= day.start - interval '7 days'
                                     AND r.bucket < now() - interval '7 days') / 1000)::numeric, 1)
           AS "même jour, semaine dernière (kWh)"
FROM day CROSS JOIN grafana.rollup_15m r
JOIN grafana.devices d ON d.pk = r.device_pk
JOIN grafana.metrics m ON m.id = r.metric_id
WHERE d.tenant_id = {TENANT} AND d.type = 'meter' AND m.name = 'energy_import_wh'
  AND {in_communes('d.commune')} AND r.bucket >= day.start - interval '7 days'""", main=True),
    PanelQuery("territory_consumption_hourly", f"""
SELECT $__timeGroupAlias(r.bucket, '1h'), sum(r.energy) / 1000 AS "kWh"{_METER_ENERGY}
  AND $__timeFilter(r.bucket)
GROUP BY 1 ORDER BY 1""", format="time_series", main=True),
    PanelQuery("territory_open_alert_list", f"""
SELECT a.last_at AS "dernière", a.kind AS "type", a.severity AS "gravité", a.device_id AS "équipement",
       d.commune, a.state AS "état", a.count AS "occurrences"
FROM grafana.alerts a{_ALERT_DEVICE}
WHERE a.tenant_id = {TENANT} AND a.state <> 'resolved' AND {in_communes('d.commune')}
ORDER BY a.last_at DESC LIMIT 50""", main=True),

    # -- meters -------------------------------------------------------------------------------
    PanelQuery("meters_load_curve", f"""
SELECT $__timeGroupAlias(r.bucket, '15m'), coalesce(d.district, d.commune, '-') AS metric,
       sum(r.vsum / r.n) / 1000 AS "kW"
FROM grafana.rollup_15m r
JOIN grafana.devices d ON d.pk = r.device_pk
JOIN grafana.metrics m ON m.id = r.metric_id
WHERE d.tenant_id = {TENANT} AND d.type = 'meter' AND m.name = 'active_power_w' AND r.n > 0
  AND {in_communes('d.commune')} AND $__timeFilter(r.bucket)
GROUP BY 1, 2 ORDER BY 1""", format="time_series", main=True),
    # Active power never exceeds apparent power: the larger of the two is the apparent peak
    # where the meter reports it, else the active one.
    PanelQuery("meters_peaks", f"""
SELECT mt.device_id AS "compteur", mt.site, mt.commune,
       mt.subscribed_power_va AS "puissance souscrite (VA)", max(r.vmax) AS "pointe",
       round((100 * max(r.vmax) / nullif(mt.subscribed_power_va, 0))::numeric, 1) AS "% de la souscrite",
       count(DISTINCT r.bucket) FILTER (WHERE r.vmax > mt.subscribed_power_va) AS "heures au-dessus"
FROM grafana.meters mt
JOIN grafana.rollup_1h r ON r.device_pk = mt.pk
JOIN grafana.metrics m ON m.id = r.metric_id
WHERE mt.tenant_id = {TENANT} AND m.name IN ('apparent_power_va', 'active_power_w')
  AND {in_communes('mt.commune')} AND $__timeFilter(r.bucket)
GROUP BY mt.device_id, mt.site, mt.commune, mt.subscribed_power_va
ORDER BY 6 DESC NULLS LAST LIMIT 50""", main=True),
    PanelQuery("meters_over_subscribed", f"""
SELECT $__time(r.bucket), count(DISTINCT mt.pk) AS "compteurs au-dessus de la souscrite"
FROM grafana.meters mt
JOIN grafana.rollup_1h r ON r.device_pk = mt.pk
JOIN grafana.metrics m ON m.id = r.metric_id
WHERE mt.tenant_id = {TENANT} AND m.name IN ('apparent_power_va', 'active_power_w')
  AND r.vmax > mt.subscribed_power_va AND {in_communes('mt.commune')} AND $__timeFilter(r.bucket)
GROUP BY 1 ORDER BY 1""", format="time_series"),
    PanelQuery("meters_anomalies", f"""
SELECT a.kind AS "type", count(*) AS "anomalies", count(*) FILTER (WHERE a.end_ts IS NULL) AS "en cours"
FROM grafana.anomalies a
JOIN grafana.devices d ON d.tenant_id = a.tenant_id AND d.device_id = a.device_id
WHERE a.tenant_id = {TENANT} AND d.type = 'meter' AND {in_communes('d.commune')}
  AND $__timeFilter(a.start_ts)
GROUP BY 1 ORDER BY 2 DESC""", main=True),

    # Metered savings (CalTRACK): avoided = predicted by the baseline model - observed.
    PanelQuery("meters_savings", f"""
SELECT s.project AS "projet", s.meter AS "compteur", s.commune, s.status AS "état du calcul",
       count(*) AS "jours", round(sum(s.observed_kwh)::numeric, 1) AS "mesuré (kWh)",
       round(sum(s.predicted_kwh)::numeric, 1) AS "prévu sans action (kWh)",
       round(sum(s.avoided_kwh)::numeric, 1) AS "évité (kWh)", round(sum(s.eur)::numeric, 2) AS "évité (€)",
       round(sum(s.kg_co2)::numeric, 1) AS "CO2 évité (kg)"
FROM grafana.metered_savings s
WHERE s.tenant_id = {TENANT} AND {in_communes('s.commune')}
  AND s.day >= $__timeFrom()::date AND s.day <= $__timeTo()::date
GROUP BY s.project_id, s.project, s.meter, s.commune, s.status ORDER BY 1""", main=True),
    # Demand response: the lighting's mean power in the window against the same hours the day
    # before (the effect of the dimming).
    PanelQuery("meters_peak_windows", f"""
SELECT w.start_ts AS "début", w.end_ts AS "fin", w.area AS "zone", coalesce(w.name, 'tout le territoire') AS "nom",
       w.level AS "niveau (%)", w.dimmed AS "abaissement envoyé", w.restored AS "rétabli",
       (SELECT round((sum(r.vsum / r.n) / count(DISTINCT r.bucket) / 1000)::numeric, 2)
        FROM grafana.rollup_15m r
        JOIN grafana.devices d ON d.pk = r.device_pk
        JOIN grafana.metrics m ON m.id = r.metric_id
        WHERE d.tenant_id = w.tenant_id AND d.type = 'streetlight' AND m.name = 'lamp_power_w' AND r.n > 0
          AND (w.area = 'tenant' OR (w.area = 'commune' AND d.commune = w.name)
               OR (w.area = 'district' AND d.district = w.name))
          AND r.bucket >= w.start_ts AND r.bucket < w.end_ts) AS "éclairage pendant (kW)",
       (SELECT round((sum(r.vsum / r.n) / count(DISTINCT r.bucket) / 1000)::numeric, 2)
        FROM grafana.rollup_15m r
        JOIN grafana.devices d ON d.pk = r.device_pk
        JOIN grafana.metrics m ON m.id = r.metric_id
        WHERE d.tenant_id = w.tenant_id AND d.type = 'streetlight' AND m.name = 'lamp_power_w' AND r.n > 0
          AND (w.area = 'tenant' OR (w.area = 'commune' AND d.commune = w.name)
               OR (w.area = 'district' AND d.district = w.name))
          AND r.bucket >= w.start_ts - interval '1 day' AND r.bucket < w.end_ts - interval '1 day') AS "même heures la veille (kW)"
FROM grafana.peak_windows w
WHERE w.tenant_id = {TENANT} AND (w.area <> 'commune' OR {in_communes('w.name')})
  AND $__timeFilter(w.start_ts)
ORDER BY w.start_ts DESC LIMIT 50""", main=True),

    # -- public lighting ----------------------------------------------------------------------
    # lamp_on is 0/1: an hourly bucket's mean is the share of that hour the lamp was lit.
    PanelQuery("lighting_burning_hours", f"""
SELECT d.commune, round((sum(r.vsum / r.n) / count(DISTINCT d.pk))::numeric, 1)
           AS "heures d'allumage par point lumineux",
       count(DISTINCT d.pk) AS "points lumineux"
FROM grafana.rollup_1h r
JOIN grafana.devices d ON d.pk = r.device_pk
JOIN grafana.metrics m ON m.id = r.metric_id
WHERE d.tenant_id = {TENANT} AND d.type = 'streetlight' AND m.name = 'lamp_on' AND r.n > 0
  AND {in_communes('d.commune')} AND $__timeFilter(r.bucket)
GROUP BY 1 ORDER BY 1""", main=True),
    PanelQuery("lighting_failures", f"""
SELECT a.kind AS "type", count(*) FILTER (WHERE a.state <> 'resolved') AS "ouvertes",
       count(*) AS "dans la période"
FROM grafana.alerts a{_ALERT_DEVICE}
WHERE a.tenant_id = {TENANT} AND a.kind IN ({", ".join(f"'{k}'" for k in LIGHTING_KINDS)})
  AND (a.state <> 'resolved' OR $__timeFilter(a.last_at)) AND {in_communes('d.commune')}
GROUP BY 1 ORDER BY 1""", main=True),
    # Daily rollups start at the tenant's local midnight: shown as they are ($__time), not
    # regrouped on UTC days.
    PanelQuery("lighting_energy_per_commune", f"""
SELECT $__time(r.bucket), coalesce(d.commune, '-') AS metric, sum(r.energy) / 1000 AS "kWh"
FROM grafana.rollup_1d r
JOIN grafana.devices d ON d.pk = r.device_pk
JOIN grafana.metrics m ON m.id = r.metric_id
WHERE d.tenant_id = {TENANT} AND d.type = 'streetlight' AND m.name = 'energy_import_wh'
  AND {in_communes('d.commune')} AND $__timeFilter(r.bucket)
GROUP BY 1, 2 ORDER BY 1""", format="time_series", main=True),
    # Nights are named by their evening's local date: those whose evening is in the range.
    PanelQuery("lighting_savings_per_commune", f"""
SELECT coalesce(s.commune, '-') AS commune,
       round((sum(s.reference_wh - s.measured_wh) / 1000)::numeric, 1) AS "économie (kWh)",
       round((sum((s.reference_wh - s.measured_wh) / 1000 * s.eur_per_kwh))::numeric, 2) AS "économie (€)",
       round((sum((s.reference_wh - s.measured_wh) / 1000 * s.kg_co2_per_kwh))::numeric, 1)
           AS "CO2 évité (kg)",
       round((sum(s.led_retrofit_wh) / 1000)::numeric, 1) AS "dont LED (kWh)",
       round((sum(s.dimming_wh) / 1000)::numeric, 1) AS "dont abaissement (kWh)",
       round((sum(s.switch_off_wh) / 1000)::numeric, 1) AS "dont extinction (kWh)",
       round((sum(s.presence_wh) / 1000)::numeric, 1) AS "dont détection de présence (kWh)"
FROM grafana.lighting_savings s
WHERE s.tenant_id = {TENANT} AND {in_communes('s.commune')}
  AND s.night >= $__timeFrom()::date AND s.night <= $__timeTo()::date
GROUP BY 1 ORDER BY 1""", main=True),
    PanelQuery("lighting_map", f"""
SELECT d.device_id AS "équipement", d.type, d.lat AS latitude, d.lon AS longitude, d.commune,
       d.status AS "état",
       (SELECT count(*) FROM grafana.alerts a WHERE a.tenant_id = d.tenant_id
        AND a.device_id = d.device_id AND a.state <> 'resolved') AS "alertes ouvertes"
FROM grafana.devices d
WHERE d.tenant_id = {TENANT} AND d.type IN ('streetlight', 'lighting_cabinet')
  AND d.lat IS NOT NULL AND d.lon IS NOT NULL AND {in_communes('d.commune')}""", main=True),

    # -- care (pseudonyms only) ---------------------------------------------------------------
    PanelQuery("care_alert_timeline", f"""
SELECT $__timeGroupAlias(a.first_at, '1h'), a.kind AS metric, count(*) AS "alertes"
FROM grafana.care_alerts a
WHERE a.tenant_id = {TENANT} AND {in_communes('a.commune')} AND $__timeFilter(a.first_at)
GROUP BY 1, 2 ORDER BY 1""", format="time_series", main=True),
    PanelQuery("care_alerts", f"""
SELECT a.first_at AS "début", a.resident AS "résident", a.kind AS "type", a.severity AS "gravité",
       a.state AS "état",
       round((extract(epoch FROM a.acknowledged_at - a.first_at) / 60)::numeric, 1) AS "prise en charge (min)",
       a.resolved_at AS "résolue"
FROM grafana.care_alerts a
WHERE a.tenant_id = {TENANT} AND {in_communes('a.commune')}
  AND (a.state <> 'resolved' OR $__timeFilter(a.first_at))
ORDER BY a.first_at DESC LIMIT 100""", main=True),
    PanelQuery("care_device_health", f"""
SELECT c.resident AS "résident", c.type AS "capteur", c.status AS "état", c.last_seen_at AS "vu",
       round((extract(epoch FROM now() - c.last_seen_at) / 60)::numeric) AS "silencieux depuis (min)",
       c.battery_pct AS "batterie (%)"
FROM grafana.care_devices c
WHERE c.tenant_id = {TENANT} AND {in_communes('c.commune')}
ORDER BY c.battery_pct NULLS LAST, c.last_seen_at NULLS FIRST LIMIT 200""", main=True),

    # -- platform health ----------------------------------------------------------------------
    # ts bounds prune the readings partitions; no index on received_at.
    PanelQuery("platform_ingest_rate", f"""
SELECT $__timeGroupAlias(r.received_at, '1m'), count(*) / 60.0 AS "lectures/s"
FROM grafana.readings r
JOIN grafana.devices d ON d.pk = r.device_pk
WHERE d.tenant_id = {TENANT} AND $__timeFilter(r.received_at)
  AND r.ts >= $__timeFrom()::timestamptz - interval '1 day'
GROUP BY 1 ORDER BY 1""", format="time_series", main=True),
    PanelQuery("platform_dlq_rate", f"""
SELECT $__timeGroupAlias(j.received_at, '5m'), j.reason AS metric, count(*) / 300.0 AS "rejets/s"
FROM grafana.rejected j
WHERE (j.tenant_id = {TENANT} OR j.tenant_id IS NULL) AND $__timeFilter(j.received_at)
GROUP BY 1, 2 ORDER BY 1""", format="time_series", main=True),
    PanelQuery("platform_lag", """
SELECT stage AS "étape", round(lag_s::numeric, 1) AS "retard (s)", pending AS "en attente"
FROM grafana.pipeline_lag ORDER BY 1""", main=True),
    PanelQuery("platform_latency", f"""
SELECT $__timeGroupAlias(r.received_at, '5m'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.received_at - r.ts)) AS "p50 (s)",
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM r.received_at - r.ts)) AS "p95 (s)"
FROM grafana.readings r
JOIN grafana.devices d ON d.pk = r.device_pk
WHERE d.tenant_id = {TENANT} AND $__timeFilter(r.received_at)
  AND r.ts >= $__timeFrom()::timestamptz - interval '1 day'
GROUP BY 1 ORDER BY 1""", format="time_series", main=True),
)}


def query(key: str) -> PanelQuery:
    """The query named `key` (KeyError names the known keys)."""
    try:
        return QUERIES[key]
    except KeyError:
        raise KeyError(f"no panel query {key!r}; known: {', '.join(sorted(QUERIES))}") from None
