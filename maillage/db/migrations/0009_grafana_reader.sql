-- The role Grafana reads through (deploy/grafana/provisioning/datasources: user grafana_reader).
-- It reads only the `grafana` schema: views without care devices, care anomalies, payloads or
-- tokens; never the tables themselves. It can log in once `maillage migrate` has set its password
-- from MAILLAGE_GRAFANA_DB_PASSWORD (a migration cannot hold a secret). Roles belong to the server,
-- not the database: created only when missing.
-- depends: 0008_detection_timescale

DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader') THEN
        CREATE ROLE grafana_reader LOGIN;
    END IF;
END $$;

CREATE SCHEMA grafana;

CREATE VIEW grafana.devices WITH (security_barrier) AS
    SELECT pk, tenant_id, device_id, type, site, commune, district, building, lat, lon,
           expected_interval_s, installed_at, status, status_at, last_seen_at
    FROM devices WHERE type NOT LIKE 'care\_%';

CREATE VIEW grafana.metrics AS SELECT id, name, known FROM metrics;

CREATE VIEW grafana.readings WITH (security_barrier) AS
    SELECT r.device_pk, r.metric_id, r.ts, r.value, r.received_at
    FROM readings r JOIN devices d ON d.pk = r.device_pk WHERE d.type NOT LIKE 'care\_%';

CREATE VIEW grafana.rollup_15m WITH (security_barrier) AS
    SELECT r.* FROM rollup_15m r JOIN devices d ON d.pk = r.device_pk WHERE d.type NOT LIKE 'care\_%';
CREATE VIEW grafana.rollup_1h WITH (security_barrier) AS
    SELECT r.* FROM rollup_1h r JOIN devices d ON d.pk = r.device_pk WHERE d.type NOT LIKE 'care\_%';
CREATE VIEW grafana.rollup_1d WITH (security_barrier) AS
    SELECT r.* FROM rollup_1d r JOIN devices d ON d.pk = r.device_pk WHERE d.type NOT LIKE 'care\_%';
CREATE VIEW grafana.rollup_1mo WITH (security_barrier) AS
    SELECT r.* FROM rollup_1mo r JOIN devices d ON d.pk = r.device_pk WHERE d.type NOT LIKE 'care\_%';

CREATE VIEW grafana.anomalies WITH (security_barrier) AS
    SELECT id, tenant_id, device_id, kind, severity, score, start_ts, end_ts, evidence, grp
    FROM anomalies WHERE NOT care;

-- Platform health: rejected messages by reason, without their payloads.
CREATE VIEW grafana.rejected AS
    SELECT id, received_at, tenant_id, device_id, reason FROM rejected;

GRANT USAGE ON SCHEMA grafana TO grafana_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA grafana TO grafana_reader;
