-- maillage schema v3: rollups (15 min, hour, day, month; per device and per area), queues of
-- dirty buckets for late data, retention policies, monthly partitions for several tables.
-- depends: 0002_care_access_log

-- Metric kind, derived from the name (every `energy_*_wh` register of maillage.vocabulary is an index):
-- 'index' (cumulative energy counter), 'power' (aggregated per area too), 'gauge'.
ALTER TABLE metrics ADD COLUMN kind text GENERATED ALWAYS AS (
    CASE WHEN left(name, 7) = 'energy_' AND right(name, 3) = '_wh' THEN 'index'
         WHEN strpos(name, 'power') > 0 AND (right(name, 2) = '_w' OR right(name, 3) = '_va')
              AND name <> 'subscribed_power_va' THEN 'power'
         ELSE 'gauge' END) STORED;

-- Area rollups look devices up by site, district and commune.
CREATE INDEX devices_site ON devices (tenant_id, site) WHERE site IS NOT NULL;
CREATE INDEX devices_district ON devices (tenant_id, district) WHERE district IS NOT NULL;
CREATE INDEX devices_commune ON devices (tenant_id, commune) WHERE commune IS NOT NULL;

-- 15-minute bucket of an instant (aligned on UTC, hence on every zone with a quarter-hour offset).
CREATE FUNCTION maillage_bucket15(ts timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_bin('15 minutes', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00')
$$;

-- Start of the local bucket holding ts. Hours subtract the local minutes (never ambiguous on the
-- repeated autumn hour); days and months convert local midnight back (23 h and 25 h days).
CREATE FUNCTION maillage_bucket(ts timestamptz, grain text, tz text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE grain
        WHEN '15m' THEN date_bin('15 minutes', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00')
        WHEN '1h' THEN ts - ((ts AT TIME ZONE tz) - date_trunc('hour', ts AT TIME ZONE tz))
        WHEN '1d' THEN date_trunc('day', ts AT TIME ZONE tz) AT TIME ZONE tz
        WHEN '1mo' THEN date_trunc('month', ts AT TIME ZONE tz) AT TIME ZONE tz
    END
$$;

-- End (exclusive) of the local bucket starting at start.
CREATE FUNCTION maillage_bucket_end(start timestamptz, grain text, tz text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE grain
        WHEN '15m' THEN start + interval '15 minutes'
        WHEN '1h' THEN start + interval '1 hour'
        WHEN '1d' THEN (date_trunc('day', start AT TIME ZONE tz) + interval '1 day') AT TIME ZONE tz
        WHEN '1mo' THEN (date_trunc('month', start AT TIME ZONE tz) + interval '1 month') AT TIME ZONE tz
    END
$$;

-- Highest plausible power of a meter (W): devices.meta.max_power_w, else 1 MW.
CREATE FUNCTION maillage_max_power_w(meta jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(meta -> 'max_power_w') = 'number'
                THEN (meta ->> 'max_power_w')::double precision ELSE 1e6 END
$$;

-- Energy (Wh) between two readings v0 -> v1 of a cumulative index taken `seconds` apart; never
-- negative, never above max_w over the interval. A rise above that is a glitch: 0. A drop is a
-- rollover when v0 was in the top tenth of a decimal register of 8+ digits and the wrapped
-- difference is plausible; else a reset (meter replaced or zeroed) when the index fell below half:
-- the energy is the new index, counted from zero; a smaller drop is jitter: 0.
CREATE FUNCTION maillage_energy_step(v0 double precision, v1 double precision,
                                     seconds double precision, max_w double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN v1 >= v0 THEN CASE WHEN v1 - v0 <= max_w * seconds / 3600.0 THEN v1 - v0 ELSE 0 END
        WHEN v0 >= 1e7 AND v1 >= 0
             AND v0 >= 0.9 * power(10, floor(log(greatest(v0, 1.0))) + 1)
             AND power(10, floor(log(greatest(v0, 1.0))) + 1) - v0 + v1 <= max_w * seconds / 3600.0
            THEN power(10, floor(log(greatest(v0, 1.0))) + 1) - v0 + v1
        WHEN v1 >= 0 AND v1 < 0.5 * v0 AND v1 <= max_w * seconds / 3600.0 THEN v1
        ELSE 0
    END
$$;

-- Append-only queue of 15-minute buckets whose raw data changed, written in the transaction of
-- the insert. No key on purpose: writers never wait on a refresher, and a refresher deletes only
-- the rows it saw, so a batch committed meanwhile stays queued (docs/storage.md, "Late data").
CREATE TABLE rollup_dirty (
    device_pk  bigint NOT NULL,
    metric_id  smallint NOT NULL,
    bucket     timestamptz NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.01);

-- Area buckets to recompute after device rollups changed (same pattern).
CREATE TABLE rollup_area_dirty (
    tenant_id  text NOT NULL,
    level      text NOT NULL,
    name       text NOT NULL,
    metric_id  smallint NOT NULL,
    grain      text NOT NULL,
    bucket     timestamptz NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.01);

-- Device rollups. n: readings in the bucket (0: a gap bridged by interpolation); vsum/vmin/vmax
-- of the raw values (mean = vsum / n); energy: Wh consumed in the bucket, index metrics only.
-- 15m buckets are UTC-aligned; 1h, 1d, 1mo are local to the tenant's timezone.
CREATE TABLE rollup_15m (
    device_pk  bigint NOT NULL,
    metric_id  smallint NOT NULL,
    bucket     timestamptz NOT NULL,
    n          integer NOT NULL,
    vsum       double precision,
    vmin       double precision,
    vmax       double precision,
    energy     double precision,
    PRIMARY KEY (device_pk, metric_id, bucket)
) PARTITION BY RANGE (bucket);
CREATE TABLE rollup_15m_default PARTITION OF rollup_15m DEFAULT;

CREATE TABLE rollup_1h (LIKE rollup_15m INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                        PRIMARY KEY (device_pk, metric_id, bucket)) PARTITION BY RANGE (bucket);
CREATE TABLE rollup_1h_default PARTITION OF rollup_1h DEFAULT;

CREATE TABLE rollup_1d (LIKE rollup_15m INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                        PRIMARY KEY (device_pk, metric_id, bucket));
CREATE TABLE rollup_1mo (LIKE rollup_15m INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                         PRIMARY KEY (device_pk, metric_id, bucket));

-- Area rollups for index (energy summed) and power (mean, min, max over the readings) metrics.
CREATE TABLE rollup_area (
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    level      text NOT NULL CHECK (level IN ('site', 'district', 'commune')),
    name       text NOT NULL,
    metric_id  smallint NOT NULL,
    grain      text NOT NULL CHECK (grain IN ('15m', '1h', '1d', '1mo')),
    bucket     timestamptz NOT NULL,
    devices    integer NOT NULL,
    n          integer NOT NULL,
    vsum       double precision,
    vmin       double precision,
    vmax       double precision,
    energy     double precision,
    PRIMARY KEY (tenant_id, level, name, metric_id, grain, bucket)
);

-- How long each kind of data is kept, per tenant; the row with tenant_id NULL is the default.
-- keep NULL: forever. care_* kinds are the readings and events of care_* devices.
CREATE TABLE retention_policies (
    tenant_id  text REFERENCES tenants (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('raw', 'care_raw', 'rollup_15m', 'rollup_1h',
                   'rollup_1d', 'rollup_1mo', 'events', 'care_events', 'rejected')),
    keep       interval CHECK (keep > interval '0'),
    UNIQUE NULLS NOT DISTINCT (tenant_id, kind)
);
INSERT INTO retention_policies (tenant_id, kind, keep) VALUES
    (NULL, 'raw', interval '2 years'),
    (NULL, 'care_raw', interval '180 days'),
    (NULL, 'rollup_15m', interval '2 years'),
    (NULL, 'rollup_1h', interval '5 years'),
    (NULL, 'rollup_1d', NULL),
    (NULL, 'rollup_1mo', NULL),
    (NULL, 'events', interval '2 years'),
    (NULL, 'care_events', interval '180 days'),
    (NULL, 'rejected', interval '30 days');

-- Effective retention of one kind for one tenant: its own row, else the default.
CREATE FUNCTION maillage_keep(tenant text, kind text) RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT p.keep FROM retention_policies p
    WHERE p.kind = $2 AND (p.tenant_id = $1 OR p.tenant_id IS NULL)
    ORDER BY p.tenant_id NULLS LAST LIMIT 1
$$;

-- Monthly partitions of any table partitioned by range on a timestamptz column. Rows already
-- in the DEFAULT partition for a new month are moved into it (a plain CREATE would fail).
CREATE FUNCTION maillage_ensure_partitions_of(parent regclass, from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m        date := date_trunc('month', from_ts AT TIME ZONE 'UTC')::date;
    created  integer := 0;
    base     text;
    col      text;
    def      regclass;
    part     text;
    lo       timestamptz;
    hi       timestamptz;
    crowded  boolean;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = parent) <> 'p' THEN
        RETURN 0;  -- a TimescaleDB hypertable makes its own chunks
    END IF;
    SELECT relname INTO base FROM pg_class WHERE oid = parent;
    SELECT a.attname INTO col FROM pg_partitioned_table p
        JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
        WHERE p.partrelid = parent;
    SELECT p.partdefid::regclass INTO def FROM pg_partitioned_table p
        WHERE p.partrelid = parent AND p.partdefid <> 0;
    WHILE m <= (to_ts AT TIME ZONE 'UTC')::date LOOP
        part := format('%s_%s', base, to_char(m, 'YYYYMM'));
        lo := m::timestamp AT TIME ZONE 'UTC';
        hi := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
        IF to_regclass(part) IS NULL THEN
            crowded := false;
            IF def IS NOT NULL THEN
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I >= $1 AND %I < $2)',
                               def, col, col) INTO crowded USING lo, hi;
            END IF;
            IF crowded THEN
                EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                               part, parent);
                EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= $1 AND %I < $2 RETURNING *) '
                               'INSERT INTO %I SELECT * FROM moved', def, col, col, part) USING lo, hi;
                EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                               parent, part, lo, hi);
            ELSE
                EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                               part, parent, lo, hi);
            END IF;
            created := created + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$;

CREATE OR REPLACE FUNCTION maillage_ensure_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT maillage_ensure_partitions_of('readings', from_ts, to_ts)
         + maillage_ensure_partitions_of('rollup_15m', from_ts, to_ts)
         + maillage_ensure_partitions_of('rollup_1h', from_ts, to_ts)
$$;

DO $$ BEGIN PERFORM maillage_ensure_partitions(now() - interval '24 months', now() + interval '3 months'); END $$;

-- Readings stored before this version get their rollups from the next refresh.
INSERT INTO rollup_dirty (device_pk, metric_id, bucket)
SELECT DISTINCT device_pk, metric_id, maillage_bucket15(ts) FROM readings;
