-- Every read of care data through the API is recorded here (health data: CNIL).
-- depends: 0001_initial

CREATE TABLE care_access_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    token_id    bigint,
    role        text NOT NULL,
    tenant_id   text NOT NULL,
    device_id   text,
    what        text NOT NULL
);
CREATE INDEX care_access_log_tenant_at ON care_access_log (tenant_id, at DESC);
