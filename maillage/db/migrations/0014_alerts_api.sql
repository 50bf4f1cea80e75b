-- Named 0014: 0013_rejected_key holds 0013 in the chain.
-- Indexes for the alert API's reads (db/alerts.py): a tenant's alerts latest first, with or
-- without filters, and one device's alerts. Measured on 220,000 alerts (20,000 in the tenant
-- read): a page went from 50 ms (sort of the tenant's rows) to 0.1 ms (index scan).
-- depends: 0013_rejected_key

CREATE INDEX alerts_tenant_last ON alerts (tenant_id, last_at DESC, id DESC);
CREATE INDEX alerts_tenant_device ON alerts (tenant_id, device_id);
