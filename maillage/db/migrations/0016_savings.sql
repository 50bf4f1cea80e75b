-- Savings: tariffs and emission factors per tenant (by validity date), outdoor temperature
-- series imported from CSV, metered savings projects (baseline / reporting periods per meter)
-- and their results (per day, priced when computed). See docs/savings.md.
-- depends: 0015_metric_names

-- The tariff in force on a day is the tenant's row with the latest valid_from <= that day.
-- Either a base price, or peak and off-peak prices with the off-peak hours ('22:00-06:00', or
-- several ranges separated by commas), in the tenant's local time.
CREATE TABLE savings_tariffs (
    id               bigserial PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    valid_from       date NOT NULL,
    base_eur_kwh     double precision CHECK (base_eur_kwh >= 0),
    peak_eur_kwh     double precision CHECK (peak_eur_kwh >= 0),
    offpeak_eur_kwh  double precision CHECK (offpeak_eur_kwh >= 0),
    offpeak_hours    text,
    source           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, valid_from),
    CHECK ((base_eur_kwh IS NOT NULL AND peak_eur_kwh IS NULL AND offpeak_eur_kwh IS NULL
            AND offpeak_hours IS NULL)
        OR (base_eur_kwh IS NULL AND peak_eur_kwh IS NOT NULL AND offpeak_eur_kwh IS NOT NULL
            AND offpeak_hours IS NOT NULL))
);

-- kg CO2 per kWh by validity date; without a row the French mix default of
-- maillage.processors.savings.tariffs applies (its source is stored with each result).
CREATE TABLE savings_emission_factors (
    id              bigserial PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    valid_from      date NOT NULL,
    kg_co2_per_kwh  double precision NOT NULL CHECK (kg_co2_per_kwh >= 0),
    source          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, valid_from)
);

-- Outdoor temperature imported from a CSV (a weather station's series); a weather device's
-- temperature_c readings stay in `readings`.
CREATE TABLE weather_readings (
    tenant_id      text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    station        text NOT NULL CHECK (station ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    ts             timestamptz NOT NULL,
    temperature_c  double precision NOT NULL CHECK (temperature_c BETWEEN -90 AND 70),
    imported_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, station, ts)
);

-- A metered savings project: one meter, a baseline and a reporting period (local dates of the
-- tenant, end exclusive; the gap between them is the blackout, e.g. the works), and where its
-- outdoor temperature comes from (a device's temperature_c readings, or an imported station).
CREATE TABLE savings_projects (
    id                     bigserial PRIMARY KEY,
    tenant_id              text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    device_pk              bigint NOT NULL REFERENCES devices (pk) ON DELETE CASCADE,
    metric                 text NOT NULL DEFAULT 'energy_import_wh',
    baseline_start         date NOT NULL,
    baseline_end           date NOT NULL,
    reporting_start        date NOT NULL,
    reporting_end          date,  -- NULL: up to yesterday
    temperature_device_pk  bigint REFERENCES devices (pk) ON DELETE RESTRICT,
    temperature_station    text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    created_by             text,
    UNIQUE (tenant_id, name),
    CHECK (baseline_end > baseline_start),
    CHECK (reporting_start >= baseline_end),
    CHECK (reporting_end IS NULL OR reporting_end > reporting_start),
    CHECK ((temperature_device_pk IS NULL) <> (temperature_station IS NULL))
);
CREATE INDEX savings_projects_tenant ON savings_projects (tenant_id);

-- The last computation of a project: status, the baseline model's fit statistics (enough to
-- recompute ASHRAE Guideline 14 uncertainty for any window of reporting days, in SQL), and the
-- fingerprint of the data it read (the job recomputes only when it changed).
CREATE TABLE savings_metered_results (
    project_id        bigint PRIMARY KEY REFERENCES savings_projects (id) ON DELETE CASCADE,
    computed_at       timestamptz NOT NULL DEFAULT now(),
    fingerprint       text NOT NULL,
    status            text NOT NULL CHECK (status IN ('ok', 'insufficient', 'failed')),
    message           text,
    method            text NOT NULL,
    baseline_days     integer,
    n                 double precision,
    n_prime           double precision,
    cvrmse_adj        double precision,
    t_stat            double precision,
    confidence        double precision,
    reporting_days    integer,
    observed_kwh      double precision,
    predicted_kwh     double precision,
    avoided_kwh       double precision,
    uncertainty_kwh   double precision,
    model             jsonb
);

-- One row per reporting day with both a measured and a predicted value; priced with the tariff
-- and factor in force that day, when computed (a later tariff does not change a past saving).
CREATE TABLE savings_metered_days (
    project_id      bigint NOT NULL REFERENCES savings_projects (id) ON DELETE CASCADE,
    day             date NOT NULL,
    observed_kwh    double precision NOT NULL,
    predicted_kwh   double precision NOT NULL,
    avoided_kwh     double precision NOT NULL,
    eur             double precision,  -- NULL: no tariff in force that day
    kg_co2          double precision NOT NULL,
    tariff_id       bigint REFERENCES savings_tariffs (id) ON DELETE SET NULL,
    factor_id       bigint REFERENCES savings_emission_factors (id) ON DELETE SET NULL,
    factor_source   text NOT NULL,
    PRIMARY KEY (project_id, day)
);
