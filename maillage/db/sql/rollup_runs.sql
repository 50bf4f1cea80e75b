-- Contiguous runs of target buckets: each run is read from raw data with one range scan.
INSERT INTO _runs (device_pk, metric_id, kind, lo, hi, max_w)
SELECT s.device_pk, s.metric_id, m.kind, s.lo, s.hi, maillage_max_power_w(d.meta)
FROM (SELECT device_pk, metric_id, min(bucket) AS lo, max(bucket) + interval '15 minutes' AS hi
      FROM (SELECT *, bucket - interval '15 minutes'
                      * row_number() OVER (PARTITION BY device_pk, metric_id ORDER BY bucket) AS grp
            FROM _t15) t
      GROUP BY device_pk, metric_id, grp) s
JOIN metrics m ON m.id = s.metric_id
JOIN devices d ON d.pk = s.device_pk
