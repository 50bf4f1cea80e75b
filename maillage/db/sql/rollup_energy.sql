-- Neighbour lookups look one day away first: an unbounded "last reading before" visits every
-- monthly partition. The second branch of each UNION ALL runs only when the first finds nothing.
-- Energy of index metrics: each step between consecutive readings (maillage_energy_step: resets,
-- rollovers, glitches) is spread evenly over its interval, and a bucket gets the share of every
-- interval overlapping it. This is "index at end minus index at start, interpolated linearly".
WITH seg AS (
    SELECT u.device_pk, u.metric_id, u.lo, u.hi, u.max_w, r.ts, r.value
    FROM _runs u CROSS JOIN LATERAL (
        SELECT r.ts, r.value FROM readings r
        WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
          AND r.ts >= u.lo AND r.ts < u.hi OFFSET 0) r
    WHERE u.kind = 'index'
  UNION ALL
    SELECT u.device_pk, u.metric_id, u.lo, u.hi, u.max_w, p.ts, p.value
    FROM _runs u CROSS JOIN LATERAL (
        (SELECT r.ts, r.value FROM readings r
         WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
           AND r.ts < u.lo AND r.ts >= u.lo - interval '1 day'
         ORDER BY r.ts DESC LIMIT 1)
        UNION ALL
        (SELECT r.ts, r.value FROM readings r
         WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
           AND r.ts < u.lo - interval '1 day'
         ORDER BY r.ts DESC LIMIT 1)
        LIMIT 1) p
    WHERE u.kind = 'index'
  UNION ALL
    SELECT u.device_pk, u.metric_id, u.lo, u.hi, u.max_w, x.ts, x.value
    FROM _runs u CROSS JOIN LATERAL (
        (SELECT r.ts, r.value FROM readings r
         WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
           AND r.ts >= u.hi AND r.ts < u.hi + interval '1 day'
         ORDER BY r.ts LIMIT 1)
        UNION ALL
        (SELECT r.ts, r.value FROM readings r
         WHERE r.device_pk = u.device_pk AND r.metric_id = u.metric_id
           AND r.ts >= u.hi + interval '1 day'
         ORDER BY r.ts LIMIT 1)
        LIMIT 1) x
    WHERE u.kind = 'index'
), steps AS (
    SELECT device_pk, metric_id, lo, hi, max_w, lag(ts) OVER w AS t0, lag(value) OVER w AS v0,
           ts AS t1, value AS v1
    FROM seg WINDOW w AS (PARTITION BY device_pk, metric_id, lo ORDER BY ts)
), iv AS (
    SELECT device_pk, metric_id, lo, hi, t0, t1, extract(epoch FROM t1 - t0)::float8 AS secs,
           maillage_energy_step(v0, v1, extract(epoch FROM t1 - t0)::float8, max_w) AS step
    FROM steps WHERE t0 IS NOT NULL
)
INSERT INTO _new AS n (device_pk, metric_id, bucket, n, energy)
SELECT device_pk, metric_id, b, 0, sum(e) FROM (
    -- A step inside one bucket (most of them when readings are frequent) is all that bucket's.
    SELECT iv.device_pk, iv.metric_id, b.b, iv.step AS e
    FROM iv CROSS JOIN LATERAL (SELECT maillage_bucket15(iv.t0) AS b) b
    WHERE b.b = maillage_bucket15(iv.t1) AND b.b >= iv.lo AND b.b < iv.hi
  UNION ALL
    SELECT iv.device_pk, iv.metric_id, g.b,
           iv.step * extract(epoch FROM least(iv.t1, g.b + interval '15 minutes')
                                        - greatest(iv.t0, g.b))::float8 / iv.secs
    FROM iv CROSS JOIN LATERAL generate_series(greatest(maillage_bucket15(iv.t0), iv.lo),
                                               least(iv.t1, iv.hi - interval '15 minutes'),
                                               interval '15 minutes') AS g(b)
    WHERE g.b < iv.t1 AND maillage_bucket15(iv.t0) <> maillage_bucket15(iv.t1)
) x
GROUP BY 1, 2, 3
ON CONFLICT (device_pk, metric_id, bucket) DO UPDATE SET energy = EXCLUDED.energy
