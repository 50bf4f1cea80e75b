-- Rejected messages are keyed by what cannot repeat: a digest of (MQTT topic, receive time,
-- payload) computed by the storage writer, not the Kafka offset, which restarts at 0 when the
-- embedded broker loses its log (new rejections were then discarded as "already stored").
-- Existing rows get a key of their own (their id); kafka_offset stays, informative only.
-- Area rollups leave care devices out from now on: areas holding one are recomputed.
-- depends: 0012_tokens

ALTER TABLE rejected ADD COLUMN record_key bytea;
UPDATE rejected SET record_key = convert_to('legacy:' || id::text, 'UTF8');
ALTER TABLE rejected ALTER COLUMN record_key SET NOT NULL;
ALTER TABLE rejected ADD CONSTRAINT rejected_record_key UNIQUE (record_key);
ALTER TABLE rejected DROP CONSTRAINT IF EXISTS rejected_kafka_offset_key;

INSERT INTO rollup_area_dirty (tenant_id, level, name, metric_id, grain, bucket)
SELECT DISTINCT r.tenant_id, r.level, r.name, r.metric_id, r.grain, r.bucket
FROM rollup_area r
WHERE EXISTS (
    SELECT 1 FROM devices d
    WHERE d.tenant_id = r.tenant_id AND left(d.type, 5) = 'care_'
      AND CASE r.level WHEN 'site' THEN d.site WHEN 'district' THEN d.district
                       ELSE d.commune END = r.name);
