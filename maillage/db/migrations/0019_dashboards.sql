-- (reserved for the dashboards stage; filled in by its change)
-- depends: 0018_commands

SELECT 1;
