-- maillage schema v1: registry, readings (partitioned by time), events, rejected messages.
-- depends:

CREATE TABLE tenants (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name        text NOT NULL,
    timezone    text NOT NULL DEFAULT 'Europe/Paris',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE,
    tenant_id   text REFERENCES tenants (id) ON DELETE CASCADE,  -- NULL: every tenant ('*', admin only)
    role        text NOT NULL CHECK (role IN ('admin', 'energy_manager', 'care_coordinator', 'opendata')),
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK (tenant_id IS NOT NULL OR role = 'admin')
);

CREATE TABLE devices (
    pk                   bigserial PRIMARY KEY,
    tenant_id            text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id            text NOT NULL CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    type                 text NOT NULL CHECK (type IN ('meter', 'streetlight', 'lighting_cabinet',
                             'care_motion', 'care_door', 'care_bed', 'care_button', 'care_env',
                             'care_hub', 'presence', 'luminosity')),
    mqtt_username        text NOT NULL UNIQUE,
    site                 text,
    commune              text,
    district             text,
    building             text,
    dwelling             text,
    lat                  double precision CHECK (lat BETWEEN -90 AND 90),
    lon                  double precision CHECK (lon BETWEEN -180 AND 180),
    meta                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    expected_interval_s  integer CHECK (expected_interval_s > 0),
    installed_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    status               text NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'online', 'offline')),
    status_at            timestamptz,
    last_seen_at         timestamptz,
    UNIQUE (tenant_id, device_id)
);
CREATE INDEX devices_tenant_type ON devices (tenant_id, type);

CREATE TABLE metrics (
    id          smallserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    known       boolean NOT NULL DEFAULT true  -- false: a name outside the vocabulary, kept and flagged
);

-- One row per (device, metric, measurement time). First value received wins (ON CONFLICT DO NOTHING).
CREATE TABLE readings (
    device_pk    bigint NOT NULL,
    metric_id    smallint NOT NULL,
    ts           timestamptz NOT NULL,
    value        double precision NOT NULL,
    received_at  timestamptz NOT NULL,
    seq          bigint,
    PRIMARY KEY (device_pk, metric_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE readings_default PARTITION OF readings DEFAULT;

-- Monthly partitions, created ahead by maillage_ensure_partitions (called by migrate and storage).
CREATE FUNCTION maillage_ensure_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m        date := date_trunc('month', from_ts AT TIME ZONE 'UTC')::date;
    created  integer := 0;
    part     text;
BEGIN
    WHILE m <= (to_ts AT TIME ZONE 'UTC')::date LOOP
        part := format('readings_%s', to_char(m, 'YYYYMM'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                part, (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$;

DO $$ BEGIN PERFORM maillage_ensure_partitions(now() - interval '24 months', now() + interval '3 months'); END $$;

CREATE TABLE events (
    device_pk    bigint NOT NULL REFERENCES devices (pk) ON DELETE CASCADE,
    ts           timestamptz NOT NULL,
    event        text NOT NULL,
    attrs        jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at  timestamptz NOT NULL,
    seq          bigint,
    PRIMARY KEY (device_pk, ts, event)
);

CREATE TABLE rejected (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    mqtt_topic   text NOT NULL,
    tenant_id    text,
    device_id    text,
    reason       text NOT NULL,
    detail       text NOT NULL,
    payload      bytea NOT NULL,
    replayed_at  timestamptz,
    kafka_offset text UNIQUE  -- topic[partition]@offset: replaying the DLQ topic stores each once
);
CREATE INDEX rejected_tenant_time ON rejected (tenant_id, received_at DESC);
CREATE INDEX rejected_reason ON rejected (reason, received_at DESC);
