CREATE TEMP TABLE IF NOT EXISTS _aclaim (tenant_id text, level text, name text,
    metric_id smallint, grain text, bucket timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _anew (LIKE rollup_area INCLUDING INDEXES) ON COMMIT DELETE ROWS;
DELETE FROM _aclaim; DELETE FROM _anew;
