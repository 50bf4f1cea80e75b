-- Scratch tables, made once per session and emptied per stage (not dropped and re-created: a
-- refresh every few seconds would churn the catalogs).
CREATE TEMP TABLE IF NOT EXISTS _claim (device_pk bigint, metric_id smallint, bucket timestamptz)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _t15 (device_pk bigint, metric_id smallint, bucket timestamptz,
    PRIMARY KEY (device_pk, metric_id, bucket)) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _runs (device_pk bigint, metric_id smallint, kind text,
    lo timestamptz, hi timestamptz, max_w double precision) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _new (device_pk bigint, metric_id smallint, bucket timestamptz,
    n integer, vsum double precision, vmin double precision, vmax double precision,
    energy double precision, PRIMARY KEY (device_pk, metric_id, bucket)) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _changed (grain text, device_pk bigint, metric_id smallint,
    bucket timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _tg (device_pk bigint, metric_id smallint, bucket timestamptz,
    tz text) ON COMMIT DELETE ROWS;
DELETE FROM _claim; DELETE FROM _t15; DELETE FROM _runs; DELETE FROM _new; DELETE FROM _changed;
DELETE FROM _tg;
