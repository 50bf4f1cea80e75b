"""Prometheus metrics of the platform itself. With `PROMETHEUS_MULTIPROC_DIR` set (as `maillage up`
does for its children), every process writes there and the API's `/metrics` shows them all."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INGEST_MESSAGES = Counter("maillage_ingest_messages", "MQTT messages handled by the gateway",
                          ["channel", "outcome"])
INGEST_READINGS = Counter("maillage_ingest_readings", "Metric values accepted by the gateway")
DLQ_RECORDS = Counter("maillage_dlq_records", "Messages sent to the dead-letter topic", ["reason"])
BROKER_DROPPED = Gauge("maillage_mqtt_broker_dropped_messages",
                       "Mosquitto's $SYS/broker/publish/messages/dropped (must stay 0)",
                       multiprocess_mode="max")
STORED_ROWS = Counter("maillage_stored_rows", "Rows written by the storage processor", ["table"])
DUPLICATE_ROWS = Counter("maillage_duplicate_rows", "Rows ignored as already stored", ["table"])
BATCH_SECONDS = Histogram("maillage_storage_batch_seconds",
                          "Time to write one storage batch (one transaction, commit included)",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
STORAGE_LAG = Histogram("maillage_storage_lag_seconds",
                        "Gateway receive -> row committed, for the oldest reading of each batch",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
