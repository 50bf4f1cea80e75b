-- What the Grafana dashboards read (maillage/dashboards/queries.py), and tenant scoping.
--
-- Scoping is keyed on the login role, not on a session setting: every view of the `grafana`
-- schema keeps only the rows of the tenants `grafana_scopes` grants to `current_user`
-- (tenant_id NULL: every tenant, the operator's `grafana_reader` of migration 0009). A setting
-- (`SET maillage.tenant`) could be changed by anyone who can type SQL in Grafana (Explore, a
-- panel editor); the role a data source logs in with cannot. One Grafana organisation per tenant
-- gets a data source logging in as that tenant's role (`maillage dashboards reader`).
-- Views rather than row-level security on the tables: the tables stay closed to these roles,
-- and views run as their owner (RLS on the tables would not apply through them on PostgreSQL 15
-- without security_invoker, which would mean granting the tables themselves).
-- The roles read through the group role `grafana_readers` (NOLOGIN): SET ROLE to it leaves a
-- current_user without any scope row, hence no rows.
-- Never care payloads: no evidence, no alert history, no readings or events of care devices;
-- care panels see alerts and device health by the resident's pseudonym (meta.resident).
-- depends: 0018_commands

DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_readers') THEN
        CREATE ROLE grafana_readers NOLOGIN;
    END IF;
END $$;
GRANT grafana_readers TO grafana_reader;

CREATE TABLE grafana_scopes (
    role_name  text PRIMARY KEY,
    tenant_id  text REFERENCES tenants (id) ON DELETE CASCADE  -- NULL: every tenant
);
INSERT INTO grafana_scopes (role_name, tenant_id) VALUES ('grafana_reader', NULL);

-- The tenants the current role may read (inlined in every view below).
CREATE VIEW grafana.tenants WITH (security_barrier) AS
    SELECT t.id, t.name, t.timezone FROM tenants t
    WHERE EXISTS (SELECT 1 FROM grafana_scopes s WHERE s.role_name = current_user
                  AND (s.tenant_id IS NULL OR s.tenant_id = t.id));

-- Migration 0009's views, same columns, now scoped (the tenant of a row through its device).
CREATE OR REPLACE VIEW grafana.devices WITH (security_barrier) AS
    SELECT pk, tenant_id, device_id, type, site, commune, district, building, lat, lon,
           expected_interval_s, installed_at, status, status_at, last_seen_at
    FROM devices WHERE type NOT LIKE 'care\_%'
      AND tenant_id IN (SELECT id FROM grafana.tenants);

CREATE OR REPLACE VIEW grafana.readings WITH (security_barrier) AS
    SELECT r.device_pk, r.metric_id, r.ts, r.value, r.received_at
    FROM readings r JOIN grafana.devices d ON d.pk = r.device_pk;

CREATE OR REPLACE VIEW grafana.rollup_15m WITH (security_barrier) AS
    SELECT r.* FROM rollup_15m r JOIN grafana.devices d ON d.pk = r.device_pk;
CREATE OR REPLACE VIEW grafana.rollup_1h WITH (security_barrier) AS
    SELECT r.* FROM rollup_1h r JOIN grafana.devices d ON d.pk = r.device_pk;
CREATE OR REPLACE VIEW grafana.rollup_1d WITH (security_barrier) AS
    SELECT r.* FROM rollup_1d r JOIN grafana.devices d ON d.pk = r.device_pk;
CREATE OR REPLACE VIEW grafana.rollup_1mo WITH (security_barrier) AS
    SELECT r.* FROM rollup_1mo r JOIN grafana.devices d ON d.pk = r.device_pk;

CREATE OR REPLACE VIEW grafana.anomalies WITH (security_barrier) AS
    SELECT id, tenant_id, device_id, kind, severity, score, start_ts, end_ts, evidence, grp
    FROM anomalies WHERE NOT care AND tenant_id IN (SELECT id FROM grafana.tenants);

-- Rejected messages without payloads; those of no known tenant only to all-tenant roles.
CREATE OR REPLACE VIEW grafana.rejected WITH (security_barrier) AS
    SELECT id, received_at, tenant_id, device_id, reason FROM rejected
    WHERE tenant_id IN (SELECT id FROM grafana.tenants)
       OR (tenant_id IS NULL AND EXISTS (SELECT 1 FROM grafana_scopes s
                                         WHERE s.role_name = current_user AND s.tenant_id IS NULL));

-- Meters with their subscribed power (VA) from the registry (devices.meta).
CREATE VIEW grafana.meters WITH (security_barrier) AS
    SELECT d.pk, d.tenant_id, d.device_id, d.site, d.commune, d.district, d.building,
           CASE WHEN jsonb_typeof(m.meta -> 'subscribed_power_va') = 'number'
                THEN (m.meta ->> 'subscribed_power_va')::double precision END AS subscribed_power_va
    FROM grafana.devices d JOIN devices m ON m.pk = d.pk WHERE d.type = 'meter';

-- Area rollups (they never include care devices: maillage/db/rollup_areas.py).
CREATE VIEW grafana.rollup_area WITH (security_barrier) AS
    SELECT tenant_id, level, name, metric_id, grain, bucket, devices, n, vsum, vmin, vmax, energy
    FROM rollup_area WHERE tenant_id IN (SELECT id FROM grafana.tenants);

-- Alerts of meters, lighting and the platform (care alerts: grafana.care_alerts).
CREATE VIEW grafana.alerts WITH (security_barrier) AS
    SELECT id, tenant_id, kind, severity, device_id, grp, state, count, first_at, last_at,
           opened_at, acknowledged_at, resolved_at, escalation_level
    FROM alerts WHERE NOT care AND tenant_id IN (SELECT id FROM grafana.tenants);

-- Care alerts by the resident's pseudonym: no device id, dwelling, evidence, comments or history.
CREATE VIEW grafana.care_alerts WITH (security_barrier) AS
    SELECT a.id, a.tenant_id, a.kind, a.severity, a.state, a.count, a.first_at, a.last_at,
           a.opened_at, a.acknowledged_at, a.resolved_at, a.escalation_level,
           d.type AS device_type, d.commune, coalesce(d.meta ->> 'resident', 'inconnu') AS resident
    FROM alerts a LEFT JOIN devices d ON d.tenant_id = a.tenant_id AND d.device_id = a.device_id
    WHERE a.care AND a.tenant_id IN (SELECT id FROM grafana.tenants);

-- Care devices' health by pseudonym: status, silence, battery; never what they measured.
CREATE VIEW grafana.care_devices WITH (security_barrier) AS
    SELECT d.tenant_id, d.type, d.commune, coalesce(d.meta ->> 'resident', 'inconnu') AS resident,
           d.status, d.status_at, d.last_seen_at, d.expected_interval_s,
           (SELECT r.value FROM readings r JOIN metrics m ON m.id = r.metric_id
            WHERE r.device_pk = d.pk AND m.name = 'battery_pct'
            ORDER BY r.ts DESC LIMIT 1) AS battery_pct
    FROM devices d
    WHERE d.type LIKE 'care\_%' AND d.tenant_id IN (SELECT id FROM grafana.tenants);

-- Lighting savings per lamp and night (migration 0017), for the savings per commune panel.
CREATE VIEW grafana.lighting_savings WITH (security_barrier) AS
    SELECT tenant_id, device_id, night, cabinet, district, commune, tech, replaced_tech,
           reference_wh, measured_wh, led_retrofit_wh, dimming_wh, switch_off_wh, presence_wh,
           other_wh, eur_per_kwh, kg_co2_per_kwh
    FROM lighting_savings WHERE tenant_id IN (SELECT id FROM grafana.tenants);

-- Metered savings (migration 0016): each project's reporting days with its meter's areas.
CREATE VIEW grafana.metered_savings WITH (security_barrier) AS
    SELECT p.id AS project_id, p.tenant_id, p.name AS project, d.device_id AS meter, d.commune,
           d.district, d.site, r.status, x.day, x.observed_kwh, x.predicted_kwh, x.avoided_kwh,
           x.eur, x.kg_co2
    FROM savings_projects p
    JOIN grafana.devices d ON d.pk = p.device_pk
    LEFT JOIN savings_metered_results r ON r.project_id = p.id
    JOIN savings_metered_days x ON x.project_id = p.id;

-- Declared peak windows (demand response, migration 0018), without who declared them.
CREATE VIEW grafana.peak_windows WITH (security_barrier) AS
    SELECT id, tenant_id, area, name, start_ts, end_ts, level,
           dim_command_id IS NOT NULL AS dimmed, restore_command_id IS NOT NULL AS restored
    FROM peak_windows WHERE tenant_id IN (SELECT id FROM grafana.tenants);

-- How far each stage is behind, for all-tenant roles only (offsets and outboxes are shared).
CREATE VIEW grafana.pipeline_lag WITH (security_barrier) AS
    SELECT stage, lag_s, pending FROM (
        SELECT 'storage' AS stage,
               extract(epoch FROM now() - (SELECT max(received_at) FROM readings))::double precision AS lag_s,
               (SELECT count(*) FROM rollup_dirty) AS pending
        UNION ALL
        SELECT 'detection',
               extract(epoch FROM now() - (SELECT max(updated_at) FROM detection_offsets))::double precision,
               (SELECT count(*) FROM anomaly_outbox WHERE produced_at IS NULL)
        UNION ALL
        SELECT 'notifications',
               coalesce(extract(epoch FROM now() - (SELECT min(created_at) FROM notification_outbox
                        WHERE delivered_at IS NULL AND failed_at IS NULL))::double precision, 0),
               (SELECT count(*) FROM notification_outbox WHERE delivered_at IS NULL AND failed_at IS NULL)
    ) s
    WHERE EXISTS (SELECT 1 FROM grafana_scopes g WHERE g.role_name = current_user AND g.tenant_id IS NULL);

GRANT USAGE ON SCHEMA grafana TO grafana_readers;
GRANT SELECT ON ALL TABLES IN SCHEMA grafana TO grafana_readers;
-- Migration 0009 granted the schema to grafana_reader itself; the group role holds it from now on.
REVOKE SELECT ON ALL TABLES IN SCHEMA grafana FROM grafana_reader;
