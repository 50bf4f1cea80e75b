-- (reserved for the savings stage; filled in by its change)
-- depends: 0015_metric_names

SELECT 1;
