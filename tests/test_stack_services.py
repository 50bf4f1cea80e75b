"""The session services answer: migrated schema, Kafka topics, Mosquitto refusing anonymous clients."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import psycopg

from maillage import topics
from maillage.db.migrate import applied_migrations
from maillage.stack.kafka import ensure_topics_sync


def test_schema_is_migrated(db_url: str) -> None:
    """The readings table is partitioned and the first migration is recorded."""
    assert applied_migrations(db_url)[0] == "0001_initial"
    with psycopg.connect(db_url) as conn:
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass"
        ).fetchone()
    assert parts is not None and parts[0] >= 24


def test_kafka_topics_created(services) -> None:  # type: ignore[no-untyped-def]
    """All contract topics exist after ensure_topics."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    ensure_topics_sync(services.kafka_bootstrap, 4)

    async def names() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    assert set(topics.ALL_TOPICS) <= set(asyncio.run(names()))


def test_mosquitto_refuses_anonymous(services) -> None:  # type: ignore[no-untyped-def]
    """No username, no connection."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    rc: list[object] = []
    client.on_connect = lambda c, u, f, reason, p: rc.append(reason)
    client.connect("127.0.0.1", services.mqtt_port)
    client.loop_start()
    import time

    deadline = time.time() + 5
    while not rc and time.time() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    assert rc and rc[0].is_failure
