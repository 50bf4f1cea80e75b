"""Ingest: the MQTT gateway and the pure parsers that turn device payloads into envelopes."""
