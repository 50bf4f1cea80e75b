-- A claimed bucket of an index metric widens to the buckets of the readings just before and
-- just after it: their interpolated boundaries depend on it. For a run of consecutive claimed
-- buckets the union of those ranges is the run widened at its two ends, so only the ends are
-- looked up. Claims and buckets older than the raw retention (one day of margin) are dropped:
-- their raw data may be cut already, and rollups outlive raw data.
WITH dk AS (
    SELECT cl.device_pk, cl.metric_id, cl.bucket, d.tenant_id,
           CASE WHEN left(d.type, 5) = 'care_' THEN 'care_raw' ELSE 'raw' END AS kind
    FROM _claim cl JOIN devices d ON d.pk = cl.device_pk
), kinds AS MATERIALIZED (  -- maillage_keep once per tenant and kind, not per claimed row
    SELECT tenant_id, kind, now() - maillage_keep(tenant_id, kind) + interval '1 day' AS kept
    FROM (SELECT DISTINCT tenant_id, kind FROM dk) t
), k AS (
    SELECT dk.device_pk, dk.metric_id, dk.bucket, kinds.kept
    FROM dk JOIN kinds USING (tenant_id, kind)
), c AS (
    SELECT device_pk, metric_id, kept, min(bucket) AS lo, max(bucket) AS hi
    FROM (SELECT *, bucket - interval '15 minutes'
                    * row_number() OVER (PARTITION BY device_pk, metric_id ORDER BY bucket) AS grp
          FROM k WHERE kept IS NULL OR bucket >= kept) t
    GROUP BY device_pk, metric_id, kept, grp
)
INSERT INTO _t15 (device_pk, metric_id, bucket)
SELECT DISTINCT c.device_pk, c.metric_id, g.b
FROM c
JOIN metrics m ON m.id = c.metric_id
CROSS JOIN LATERAL (SELECT
    CASE WHEN m.kind = 'index' THEN coalesce(
        (SELECT maillage_bucket15(r.ts) FROM readings r
          WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id
            AND r.ts < c.lo AND r.ts >= c.lo - interval '1 day'
          ORDER BY r.ts DESC LIMIT 1),
        (SELECT maillage_bucket15(r.ts) FROM readings r
          WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id
            AND r.ts < c.lo - interval '1 day'
          ORDER BY r.ts DESC LIMIT 1)) END AS lo,
    CASE WHEN m.kind = 'index' THEN coalesce(
        (SELECT maillage_bucket15(r.ts) FROM readings r
          WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id
            AND r.ts >= c.hi + interval '15 minutes' AND r.ts < c.hi + interval '1 day'
          ORDER BY r.ts LIMIT 1),
        (SELECT maillage_bucket15(r.ts) FROM readings r
          WHERE r.device_pk = c.device_pk AND r.metric_id = c.metric_id
            AND r.ts >= c.hi + interval '1 day'
          ORDER BY r.ts LIMIT 1)) END AS hi
) e
CROSS JOIN LATERAL generate_series(coalesce(e.lo, c.lo), coalesce(e.hi, c.hi),
                                   interval '15 minutes') AS g(b)
WHERE c.kept IS NULL OR g.b >= c.kept
