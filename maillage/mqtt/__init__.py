"""MQTT on asyncio for maillage's hot paths, on the `mqtt5` codec (see `connection`)."""

from maillage.mqtt.connection import QOS0, QOS1, SESSION_KEPT, MqttConnection, MqttError

__all__ = ["QOS0", "QOS1", "SESSION_KEPT", "MqttConnection", "MqttError"]
