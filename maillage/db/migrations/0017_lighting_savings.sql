-- Lighting savings: one row per lamp and night (the night of `night` runs from local noon to the
-- next local noon), reference against measured energy, the saving split by cause. Written by
-- processors/savings/lighting.py (recomputed, never incremented), read by db/lighting_savings.py.
-- The lamp's cabinet, street, district and commune are copied from the registry when computed,
-- so a past night keeps the areas it was counted in. Nights are named by their evening's date.
-- depends: 0016_savings

CREATE TABLE lighting_savings (
    tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id        text NOT NULL,
    night            date NOT NULL,
    cabinet          text,
    site             text,
    district         text,
    commune          text,
    tech             text NOT NULL,
    replaced_tech    text,
    dusk             timestamptz,
    dawn             timestamptz,
    reference_wh     double precision NOT NULL,
    measured_wh      double precision NOT NULL,
    led_retrofit_wh  double precision NOT NULL,
    dimming_wh       double precision NOT NULL,
    switch_off_wh    double precision NOT NULL,
    presence_wh      double precision NOT NULL,
    other_wh         double precision NOT NULL,
    -- Priced when computed (tariff and factor in force that night), so a later tariff change
    -- leaves a past saving as it was. eur_per_kwh NULL: no tariff in force.
    eur_per_kwh      double precision,
    kg_co2_per_kwh   double precision NOT NULL,
    readings         integer NOT NULL,
    computed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id, night)
);
CREATE INDEX lighting_savings_night ON lighting_savings (tenant_id, night);
CREATE INDEX lighting_savings_commune ON lighting_savings (tenant_id, commune, night);
