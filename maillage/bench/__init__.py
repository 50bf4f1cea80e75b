"""`maillage bench`: baselines of the machine, end-to-end throughput, latency and cost per component.

Modules: `fleet` (the realistic message mix), `publish` (publisher processes), `baselines` (raw
MQTT, raw Kafka, raw COPY workers), `probes` (counters, resources, latency), `runner` (a run, its
phases in order) with `config`, `accounts`, `raw` (the baselines timed), `phases`, `progress`,
`verify`, `document` (the result JSON) and `queries` (its SQL), `report` (table, JSON,
docs/benchmarks.md), `profile` (py-spy), `cli` (the command).
"""
