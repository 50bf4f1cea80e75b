-- Detection stage: anomalies (a hypertable where TimescaleDB is present, 0008_detection_timescale),
-- the detection processor's checkpoint (device and group states, consumed offsets) and the
-- outbox the relay produces to maillage.anomalies from.
-- depends: 0007_rollup_queue_arrays

CREATE TABLE anomalies (
    id          text NOT NULL,            -- Anomaly.id (deterministic, 32 hex)
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id   text NOT NULL,            -- the device, or the device standing for a group
    kind        text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    score       double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    start_ts    timestamptz NOT NULL,
    end_ts      timestamptz,              -- NULL while open
    evidence    jsonb NOT NULL DEFAULT '{}',
    grp         text,                     -- "cabinet:<id>", "dwelling:<id>", "district:<name>"...
    care        boolean NOT NULL,         -- health data: care coordinators and admins only
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, start_ts)            -- start_ts in the key so that it can be a hypertable
);
CREATE INDEX anomalies_tenant_start ON anomalies (tenant_id, start_ts DESC);
CREATE INDEX anomalies_tenant_device_start ON anomalies (tenant_id, device_id, start_ts DESC);
CREATE INDEX anomalies_tenant_kind_start ON anomalies (tenant_id, kind, start_ts DESC);
CREATE INDEX anomalies_id ON anomalies (id);

-- One row per device the detection processor has seen: its checkpointed state, and in plain
-- columns what the silent-device job reads (latest measurement and receive times, learned interval).
CREATE TABLE detection_state (
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id   text NOT NULL,
    state       jsonb NOT NULL,
    last_ts     timestamptz,
    last_rx     timestamptz,
    interval_s  double precision,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id)
);

-- Memory shared by a group's devices (a dwelling's sensors, a cabinet's lamps).
CREATE TABLE detection_group_state (
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    grp         text NOT NULL,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, grp)
);

-- The next offset to consume per partition, committed with the states it produced: the truth a
-- restarted or rebalanced detection processor seeks to (Kafka's own commits are for lag only).
CREATE TABLE detection_offsets (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);

-- One row per anomaly transition, in commit order; the relay produces them to maillage.anomalies
-- and records where each landed (a restart scans the topic from there: nothing produced twice).
CREATE TABLE anomaly_outbox (
    seq             bigserial PRIMARY KEY,
    event_id        text NOT NULL UNIQUE,
    kafka_key       text NOT NULL,
    value           bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    produced_at     timestamptz,
    kafka_partition integer,
    kafka_offset    bigint
);
CREATE INDEX anomaly_outbox_pending ON anomaly_outbox (seq) WHERE produced_at IS NULL;
CREATE INDEX anomaly_outbox_produced ON anomaly_outbox (kafka_partition, kafka_offset)
    WHERE produced_at IS NOT NULL;

-- The detection processor's registry cache also reads these columns: announce their changes too.
CREATE TRIGGER devices_notify_detection_change
    AFTER UPDATE OF dwelling, district, commune, site, lat, lon, meta, expected_interval_s ON devices
    FOR EACH ROW EXECUTE FUNCTION maillage_notify_device_change();
