-- The device rollup queue holds one row per written batch and shard of devices (pk % 4, as
-- maillage.db.rollups.SHARDS) with the batch's distinct (device, metric, 15-minute bucket) in
-- three arrays, instead of one row per bucket: a writer adds a few rows per batch and a refresher
-- deletes a few, whatever the number of devices. Buckets are numbers of 15 minutes since 1970.
-- depends: 0006_device_password_hash

ALTER TABLE rollup_dirty RENAME TO rollup_dirty_v6;

CREATE TABLE rollup_dirty (
    shard       smallint NOT NULL,
    device_pks  bigint[] NOT NULL,
    metric_ids  smallint[] NOT NULL,
    buckets     integer[] NOT NULL,
    CHECK (cardinality(device_pks) = cardinality(metric_ids)
           AND cardinality(metric_ids) = cardinality(buckets))
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.01);

-- Entries already queued move over in rows of at most 10,000.
INSERT INTO rollup_dirty (shard, device_pks, metric_ids, buckets)
SELECT shard, array_agg(device_pk), array_agg(metric_id),
       array_agg(floor(extract(epoch FROM bucket) / 900)::integer)
FROM (SELECT device_pk % 4 AS shard, device_pk, metric_id, bucket,
             (row_number() OVER (PARTITION BY device_pk % 4 ORDER BY device_pk, metric_id, bucket) - 1)
             / 10000 AS chunk
      FROM (SELECT DISTINCT device_pk, metric_id, bucket FROM rollup_dirty_v6) d) k
GROUP BY shard, chunk;

DROP TABLE rollup_dirty_v6;
