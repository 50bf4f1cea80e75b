-- (reserved for the opendata stage; filled in by its change)
-- depends: 0019_dashboards

SELECT 1;
