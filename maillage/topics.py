"""Kafka topic names and MQTT topic rules (plain functions)."""

from __future__ import annotations

READINGS = "maillage.readings"
EVENTS = "maillage.events"
STATUS = "maillage.status"
DLQ = "maillage.dlq"
ANOMALIES = "maillage.anomalies"
ALERTS = "maillage.alerts"
COMMANDS = "maillage.commands"
ALL_TOPICS = (READINGS, EVENTS, STATUS, DLQ, ANOMALIES, ALERTS, COMMANDS)
KIND_TOPIC = {"reading": READINGS, "event": EVENTS, "ack": EVENTS, "status": STATUS}
"""The Kafka topic of an envelope, by its kind."""

MQTT_ROOT = "maillage"
GATEWAY_SHARE_GROUP = "maillage-gateway"


def device_prefix(tenant: str, device_id: str) -> str:
    """`maillage/{tenant}/{device_id}/`."""
    return f"{MQTT_ROOT}/{tenant}/{device_id}/"


def gateway_subscriptions(shared: bool) -> list[str]:
    """What the gateway subscribes to; shared subscriptions spread load over several gateways."""
    subs = [f"{MQTT_ROOT}/+/+/up/#", f"{MQTT_ROOT}/+/+/status"]
    if shared:
        return [f"$share/{GATEWAY_SHARE_GROUP}/{s}" for s in subs]
    return subs


def split_device_topic(topic: str) -> tuple[str, str, str] | None:
    """`(tenant, device_id, channel)` of a device topic; None when it is not one."""
    parts = topic.split("/", 3)
    if len(parts) < 4 or parts[0] != MQTT_ROOT or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2], parts[3]
