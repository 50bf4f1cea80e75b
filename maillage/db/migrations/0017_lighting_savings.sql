-- (reserved for the lighting_savings stage; filled in by its change)
-- depends: 0016_savings

SELECT 1;
