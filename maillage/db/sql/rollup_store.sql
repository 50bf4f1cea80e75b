-- Store recomputed rows of one grain; rows that lost all data go. Unchanged rows are not
-- rewritten, and only rows that did change are passed on to the coarser grain.
WITH gone AS (
    DELETE FROM {table} r USING {targets} t
    WHERE r.device_pk = t.device_pk AND r.metric_id = t.metric_id AND r.bucket = t.bucket
      AND NOT EXISTS (SELECT 1 FROM {source} s WHERE s.device_pk = t.device_pk
                      AND s.metric_id = t.metric_id AND s.bucket = t.bucket)
    RETURNING r.device_pk, r.metric_id, r.bucket
), up AS (
    INSERT INTO {table} AS r (device_pk, metric_id, bucket, n, vsum, vmin, vmax, energy)
    SELECT device_pk, metric_id, bucket, n, vsum, vmin, vmax, energy FROM {source}
    ON CONFLICT (device_pk, metric_id, bucket) DO UPDATE SET n = EXCLUDED.n,
        vsum = EXCLUDED.vsum, vmin = EXCLUDED.vmin, vmax = EXCLUDED.vmax, energy = EXCLUDED.energy
    WHERE (r.n, r.vsum, r.vmin, r.vmax, r.energy)
          IS DISTINCT FROM (EXCLUDED.n, EXCLUDED.vsum, EXCLUDED.vmin, EXCLUDED.vmax, EXCLUDED.energy)
    RETURNING r.device_pk, r.metric_id, r.bucket
)
INSERT INTO _changed (grain, device_pk, metric_id, bucket)
SELECT {grain}, * FROM gone UNION SELECT {grain}, * FROM up
