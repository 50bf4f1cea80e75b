-- Alerting stage: alerts (one live alert per tenant and problem), their history and the live
-- stream's feed (alert_events; writers NOTIFY alert_events, '<id>' after commit), who is told
-- (notification_subscriptions, escalation_policies) and the notification outbox with its attempts.
-- alerting_processed keeps the transitions already applied (replays change nothing).
-- Named 0011 rather than 0010: 0010_detection_series already holds that place in the chain.
-- depends: 0010_detection_series

CREATE TABLE alerts (
    id                 bigserial PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    group_key          text NOT NULL,   -- the problem: kind + device (or group), e.g. 'spike|linky-1'
    kind               text NOT NULL,   -- the anomaly kind
    severity           text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    device_id          text NOT NULL,
    grp                text,
    care               boolean NOT NULL,  -- health data: care coordinators and admins only
    state              text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    count              integer NOT NULL DEFAULT 1,   -- anomalies grouped into it
    first_at           timestamptz NOT NULL,         -- first anomaly's start
    last_at            timestamptz NOT NULL,         -- latest anomaly's start
    last_anomaly_id    text,
    opened_at          timestamptz NOT NULL DEFAULT now(),
    acknowledged_at    timestamptz, acknowledged_by text,
    resolved_at        timestamptz, resolved_by text,  -- 'system' when it cleared by itself
    escalation_level   integer NOT NULL DEFAULT 0,
    next_escalation_at timestamptz,                    -- NULL: nothing more to escalate
    version            integer NOT NULL DEFAULT 1,     -- +1 at every change
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alerts_live ON alerts (tenant_id, group_key) WHERE state <> 'resolved';
CREATE INDEX alerts_tenant_state ON alerts (tenant_id, state, last_at DESC);
CREATE INDEX alerts_escalation ON alerts (next_escalation_at) WHERE next_escalation_at IS NOT NULL;

-- Every change of an alert, in order: its history, its comments, and the live stream's feed
-- (the SSE event id is this id; `Last-Event-ID` resumes after it). NOTIFY alert_events, '<id>'.
CREATE TABLE alert_events (
    id        bigserial PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    tenant_id text NOT NULL,
    care      boolean NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,  -- 'system', or the token's label/id that acted
    action    text NOT NULL CHECK (action IN ('opened', 'repeated', 'acknowledged', 'resolved',
                                  'escalated', 'commented', 'reopened')),
    detail    jsonb NOT NULL DEFAULT '{}',  -- e.g. {"comment": "..."}, {"level": 2}
    snapshot  jsonb NOT NULL                -- the alert as the API shows it after this change
);
CREATE INDEX alert_events_tenant ON alert_events (tenant_id, id);

-- Who is told, per tenant: one row per channel target and escalation level.
CREATE TABLE notification_subscriptions (
    id         bigserial PRIMARY KEY,
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel    text NOT NULL CHECK (channel IN ('webhook', 'email')),
    target     text NOT NULL,        -- URL or e-mail address
    secret     text,                 -- webhook: HMAC-SHA256 key
    level      integer NOT NULL DEFAULT 0,  -- escalation level it belongs to (0: first notified)
    care       boolean NOT NULL DEFAULT false,  -- receives care alerts (else energy alerts only)
    kinds      text[],               -- NULL: every kind
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Escalation policy per tenant and kind ('*' default): levels[i] = seconds unacknowledged before
-- level i+1 is notified; quiet hours (local) during which non-critical energy alerts wait.
CREATE TABLE escalation_policies (
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind        text NOT NULL DEFAULT '*',
    levels_s    integer[] NOT NULL,
    quiet_from  time, quiet_to time,
    PRIMARY KEY (tenant_id, kind)
);

-- The outbox: written in the same transaction as the alert change; the sender delivers it
-- at least once; `notification_id` is stable (receivers drop repeats with it).
CREATE TABLE notification_outbox (
    id              bigserial PRIMARY KEY,
    notification_id text NOT NULL UNIQUE,   -- e.g. '<alert id>:<event id>:<subscription id>'
    subscription_id bigint NOT NULL REFERENCES notification_subscriptions (id) ON DELETE CASCADE,
    alert_id        bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    delivered_at    timestamptz,
    failed_at       timestamptz             -- gave up (after the retry budget), kept for audit
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE TABLE notification_attempts (
    id         bigserial PRIMARY KEY,
    outbox_id  bigint NOT NULL REFERENCES notification_outbox (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    ok         boolean NOT NULL,
    detail     text NOT NULL            -- HTTP status / SMTP reply / error
);

-- The `maillage.anomalies` transitions the alerting processor applied (by event_id), so that a
-- replayed transition changes nothing; rows older than a week are pruned.
CREATE TABLE alerting_processed (
    event_id     text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
