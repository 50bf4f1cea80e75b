INSERT INTO _tg (device_pk, metric_id, bucket, tz)
SELECT DISTINCT c.device_pk, c.metric_id, maillage_bucket(c.bucket, %(grain)s, t.timezone), t.timezone
FROM _changed c
JOIN devices d ON d.pk = c.device_pk
JOIN tenants t ON t.id = d.tenant_id
WHERE c.grain = %(src)s
