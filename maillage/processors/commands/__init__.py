"""The commands processor: outbox relay, Kafka -> MQTT dispatch with retries, acks (see process.py)."""
