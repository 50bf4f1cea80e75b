-- The statistical detector's state per device and series, checkpointed apart from the device
-- state: larger, and changing once per interval rather than per record.
-- depends: 0009_grafana_reader

CREATE TABLE detection_series (
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id   text NOT NULL,
    slot        text NOT NULL,            -- "online:<metric>"
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id, slot)
);
