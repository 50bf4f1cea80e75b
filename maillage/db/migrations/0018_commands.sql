-- (reserved for the commands stage; filled in by its change)
-- depends: 0017_lighting_savings

SELECT 1;
