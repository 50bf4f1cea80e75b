WITH c AS (
    DELETE FROM rollup_area_dirty WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM rollup_area_dirty {only} LIMIT %(limit)s FOR UPDATE SKIP LOCKED))
    RETURNING tenant_id, level, name, metric_id, grain, bucket)
INSERT INTO _aclaim SELECT DISTINCT * FROM c
