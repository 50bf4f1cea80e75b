"""Async processors: Kafka consumers that store, roll up, detect, alert and compute savings."""
