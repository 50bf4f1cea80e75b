-- Open data (docs/opendata.md): the per-tenant opt-in to anonymous publication, and which meters
-- are public buildings'.
-- depends: 0019_dashboards

-- Open data exports and the NGSI-LD view answer without a token only for tenants that opted in
-- (`maillage opendata publish --tenant T`); others need an opendata, energy_manager or admin token.
ALTER TABLE tenants ADD COLUMN opendata_public boolean NOT NULL DEFAULT false;

-- A meter is a public building's when registered with `--meta public_building=true` (the string
-- "true" of a CSV import counts too) and no dwelling: a meter with a dwelling is a household's,
-- whatever its metadata says. Every other meter counts as residential (the safe side).
CREATE FUNCTION maillage_public_building(meta jsonb, dwelling text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT dwelling IS NULL AND coalesce(meta ->> 'public_building' = 'true', false)
$$;
