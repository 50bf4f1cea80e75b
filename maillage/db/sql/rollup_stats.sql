-- Range reads go through LATERAL (OFFSET 0 keeps them from being flattened into joins): a hash
-- join on (device, metric) with a range filter would compare every pair of a long gap.
INSERT INTO _new (device_pk, metric_id, bucket, n, vsum, vmin, vmax, energy)
SELECT u.device_pk, u.metric_id, a.b, a.n, a.vsum, a.vmin, a.vmax,
       CASE WHEN u.kind = 'index' THEN 0.0 END
FROM _runs u CROSS JOIN LATERAL (
    SELECT maillage_bucket15(r.ts) AS b, count(*) AS n, sum(r.value) AS vsum,
           min(r.value) AS vmin, max(r.value) AS vmax
    FROM readings r
    WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id AND r.ts >= u.lo AND r.ts < u.hi
    GROUP BY 1) a
