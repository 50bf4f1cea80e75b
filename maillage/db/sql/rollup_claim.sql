-- The queue (migration 0007) holds one row per written batch and shard, with the batch's distinct
-- (device, metric, bucket number) in three arrays. The background refresher deletes the rows it
-- claims: oldest rows first until `limit` entries (at least one row). Only a refresher holding the
-- shard's advisory lock deletes queue rows, so no other claim can race this one; a writer only
-- inserts, and a row committed meanwhile waits for the next pass.
WITH w AS (
    SELECT ctid, sum(cardinality(device_pks)) OVER (ORDER BY ctid ROWS UNBOUNDED PRECEDING)
               - cardinality(device_pks) AS before
    FROM rollup_dirty WHERE shard = ANY (%(shards)s)
), c AS (
    DELETE FROM rollup_dirty WHERE ctid = ANY (ARRAY(SELECT ctid FROM w WHERE before < %(limit)s))
    RETURNING device_pks, metric_ids, buckets
), ins AS (
    INSERT INTO _claim
    SELECT DISTINCT u.device_pk, u.metric_id, timestamptz 'epoch' + u.n * interval '15 minutes'
    FROM c q CROSS JOIN LATERAL unnest(q.device_pks, q.metric_ids, q.buckets)
        AS u(device_pk, metric_id, n)
    RETURNING 1)
SELECT (SELECT coalesce(sum(cardinality(device_pks)), 0) FROM c), (SELECT count(*) FROM ins)
