INSERT INTO _new (device_pk, metric_id, bucket, n, vsum, vmin, vmax, energy)
SELECT x.device_pk, x.metric_id, x.bucket, a.n, a.vsum, a.vmin, a.vmax, a.energy
FROM _tg x CROSS JOIN LATERAL (
    SELECT count(*) AS rows, sum(s.n) AS n, sum(s.vsum) AS vsum, min(s.vmin) AS vmin,
           max(s.vmax) AS vmax, sum(s.energy) AS energy
    FROM {src} s
    WHERE s.device_pk = x.device_pk AND s.metric_id = x.metric_id
      AND s.bucket >= x.bucket AND s.bucket < maillage_bucket_end(x.bucket, %(grain)s, x.tz)) a
WHERE a.rows > 0
