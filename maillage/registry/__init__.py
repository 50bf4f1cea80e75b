"""The registry: tenants, API tokens and devices (with their MQTT credentials in the broker)."""
