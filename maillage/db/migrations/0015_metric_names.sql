-- Metric names outside the vocabulary are bounded per tenant (and in all): metric_tenants records
-- which tenant brought which unknown name. One device inventing names could otherwise fill the
-- smallint key of `metrics` (32,767) and stop storage for every tenant; beyond the bounds
-- (maillage/db/metric_names.py) its readings go to `rejected` as too_many_metric_names.
-- depends: 0014_alerts_api

CREATE TABLE metric_tenants (
    tenant_id  text NOT NULL,
    name       text NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
