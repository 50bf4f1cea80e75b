INSERT INTO rollup_area_dirty (tenant_id, level, name, metric_id, grain, bucket)
SELECT DISTINCT d.tenant_id, l.level, l.name, c.metric_id, c.grain, c.bucket
FROM _changed c
JOIN metrics m ON m.id = c.metric_id AND m.kind IN ('index', 'power')
JOIN devices d ON d.pk = c.device_pk AND left(d.type, 5) <> 'care_'  -- areas serve energy views
CROSS JOIN LATERAL (VALUES ('site', d.site), ('district', d.district), ('commune', d.commune))
    AS l(level, name)
WHERE l.name IS NOT NULL
