"""`maillage bench`: baselines of the machine, end-to-end throughput, latency and cost per component.

Modules: `fleet` (the realistic message mix), `publish` (publisher processes), `baselines` (raw
MQTT, raw Kafka, raw COPY), `probes` (counters, resources, latency), `runner` (the phases),
`report` (table, JSON, docs/benchmarks.md), `profile` (py-spy), `cli` (the command).
"""
