-- Télégestion: audited commands and their per-device deliveries; adaptive-lighting rules; peak windows.
-- depends: 0017_lighting_savings

-- One row per order (an API call, a rule, a peak window): who, when, what, and the overall result.
CREATE TABLE commands (
    id           bigserial PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    target       text NOT NULL,                  -- 'device:<id>' or a group id ('street:<name>', ...)
    cmd          text NOT NULL CHECK (cmd IN ('on', 'off', 'dim', 'schedule', 'auto')),
    level        double precision CHECK (level BETWEEN 0 AND 100),
    params       jsonb NOT NULL DEFAULT '{}'::jsonb,   -- duration_s, schedule steps
    issued_by    text NOT NULL,                  -- 'token:<id>', 'rule:<id>', 'peak_window:<id>', 'cli'
    token_id     bigint,                         -- audit: the API token (kept after it is revoked)
    role         text,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'done', 'failed')),
    devices      integer NOT NULL CHECK (devices > 0),
    done         integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX commands_tenant ON commands (tenant_id, id DESC);

-- One row per target device: the transactional outbox to maillage.commands (produced_at) and
-- the delivery state the commands processor drives (accepted from Kafka, sent over MQTT, acked).
CREATE TABLE command_targets (
    id           bigserial PRIMARY KEY,          -- the `id` on …/down/cmd and in the device's ack
    command_id   bigint NOT NULL REFERENCES commands (id) ON DELETE CASCADE,
    tenant_id    text NOT NULL,
    device_id    text NOT NULL,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'done', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    produced_at  timestamptz,                    -- on maillage.commands (NULL: still in the outbox)
    accepted_at  timestamptz,                    -- recorded by the commands processor from Kafka
    next_at      timestamptz,                    -- next MQTT attempt (or the give-up time once sent)
    sent_at      timestamptz,
    finished_at  timestamptz,
    result       jsonb,                          -- the ack's fields (error, level, ts)
    error        text
);
CREATE INDEX command_targets_command ON command_targets (command_id);
CREATE INDEX command_targets_outbox ON command_targets (id) WHERE produced_at IS NULL;
CREATE INDEX command_targets_due ON command_targets (next_at) WHERE state IN ('pending', 'sent');
CREATE INDEX command_targets_device ON command_targets (tenant_id, device_id, id DESC);

-- Adaptive lighting: presence on a street or district raises its lamps to `level` for `hold_s`.
CREATE TABLE lighting_rules (
    id            bigserial PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    area          text NOT NULL CHECK (area IN ('street', 'district')),
    name          text NOT NULL,
    level         double precision NOT NULL CHECK (level BETWEEN 0 AND 100),
    night_level   double precision NOT NULL CHECK (night_level BETWEEN 0 AND 100),
    hold_s        double precision NOT NULL CHECK (hold_s > 0),
    enabled       boolean NOT NULL DEFAULT true,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    raised_until  timestamptz,                   -- state: raised until then; NULL at night level
    raised_count  bigint NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, area, name)
);

-- Demand response: the lighting of an area dimmed during a declared peak window, then restored.
CREATE TABLE peak_windows (
    id                  bigserial PRIMARY KEY,
    tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    area                text NOT NULL CHECK (area IN ('tenant', 'commune', 'district')),
    name                text,
    start_ts            timestamptz NOT NULL,
    end_ts              timestamptz NOT NULL CHECK (end_ts > start_ts),
    level               double precision NOT NULL CHECK (level BETWEEN 0 AND 100),
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    dim_command_id      bigint REFERENCES commands (id) ON DELETE SET NULL,
    restore_command_id  bigint REFERENCES commands (id) ON DELETE SET NULL,
    CHECK ((area = 'tenant') = (name IS NULL))
);
CREATE INDEX peak_windows_due ON peak_windows (start_ts) WHERE restore_command_id IS NULL;
