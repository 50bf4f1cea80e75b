-- A query's synchronous refresh reads its devices' queue entries and leaves them queued.
INSERT INTO _claim
SELECT DISTINCT u.device_pk, u.metric_id, timestamptz 'epoch' + u.n * interval '15 minutes'
FROM rollup_dirty q CROSS JOIN LATERAL unnest(q.device_pks, q.metric_ids, q.buckets)
    AS u(device_pk, metric_id, n)
WHERE q.shard = ANY (%(shards)s) AND u.device_pk = ANY (%(pks)s)
