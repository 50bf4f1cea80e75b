WITH gone AS (
    DELETE FROM rollup_area r USING _aclaim a
    WHERE (r.tenant_id, r.level, r.name, r.metric_id, r.grain, r.bucket)
          = (a.tenant_id, a.level, a.name, a.metric_id, a.grain, a.bucket)
      AND NOT EXISTS (SELECT 1 FROM _anew n
                      WHERE (n.tenant_id, n.level, n.name, n.metric_id, n.grain, n.bucket)
                            = (a.tenant_id, a.level, a.name, a.metric_id, a.grain, a.bucket))
)
INSERT INTO rollup_area AS r SELECT * FROM _anew
ON CONFLICT (tenant_id, level, name, metric_id, grain, bucket) DO UPDATE SET
    devices = EXCLUDED.devices, n = EXCLUDED.n, vsum = EXCLUDED.vsum, vmin = EXCLUDED.vmin,
    vmax = EXCLUDED.vmax, energy = EXCLUDED.energy
