-- Claimed buckets are grouped into runs (a new run after a long gap), and each device of the area
-- is read with one range scan per run: far cheaper than one probe per device and bucket. Every
-- bucket of a run is recomputed (the few unclaimed ones inside it too: same values), which keeps
-- a join between two large intermediate results, easily misplanned, out of the statement.
WITH runs AS MATERIALIZED (
    SELECT row_number() OVER () AS id, tenant_id, name, metric_id, min(bucket) AS lo,
           max(bucket) AS hi
    FROM (SELECT *, sum(gap) OVER (PARTITION BY tenant_id, name, metric_id ORDER BY bucket) AS run
          FROM (SELECT tenant_id, name, metric_id, bucket,
                       coalesce((bucket - lag(bucket) OVER (PARTITION BY tenant_id, name, metric_id
                                 ORDER BY bucket) > %(gap)s::interval)::int, 0) AS gap
                FROM _aclaim WHERE level = %(level)s AND grain = %(grain)s) x) y
    GROUP BY tenant_id, name, metric_id, run
), agg AS MATERIALIZED (
    -- grouped by integer run id, not by names: sorting text keys costs more than the join
    SELECT u.id, r.bucket, count(*) AS devices, sum(r.n) AS n, sum(r.vsum) AS vsum,
           min(r.vmin) AS vmin, max(r.vmax) AS vmax, sum(r.energy) AS energy
    FROM runs u
    -- care devices stay out of areas: their power is a home's, not the territory's energy view
    JOIN devices d ON d.tenant_id = u.tenant_id AND d.{level} = u.name AND left(d.type, 5) <> 'care_'
    CROSS JOIN LATERAL (
        SELECT * FROM {table} r
        WHERE r.device_pk = d.pk AND r.metric_id = u.metric_id
          AND r.bucket >= u.lo AND r.bucket <= u.hi OFFSET 0) r
    GROUP BY u.id, r.bucket
)
INSERT INTO _anew
SELECT u.tenant_id, %(level)s, u.name, u.metric_id, %(grain)s, g.bucket, g.devices, g.n, g.vsum,
       g.vmin, g.vmax, g.energy
FROM agg g JOIN runs u ON u.id = g.id
