-- Tokens expire and record their last use. Existing tokens keep expires_at NULL (never expire:
-- nothing that works today stops working); new ones get the default lifetime (90 days, or
-- MAILLAGE_TOKEN_TTL_DAYS, or --ttl-days; 0 = never). last_used_at is written at most once a
-- minute per token. Revocation (revoked_at) already exists and is read at every request.
-- Named 0012: 0011_alerts holds 0011 in the chain.
-- depends: 0011_alerts

ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
ALTER TABLE api_tokens ADD COLUMN last_used_at timestamptz;
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);
