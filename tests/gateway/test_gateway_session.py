"""The gateway in-process against the real Mosquitto, Tansu and PostgreSQL: its MQTT v5 session
(persistent, reconnecting), PUBACKs after Kafka, and a clean stop that leaves nothing unacked."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import mqtt5
import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer

from maillage import topics
from maillage.ingest.gateway import Gateway, GatewayConfig
from maillage.mqtt import SESSION_KEPT, MqttConnection
from maillage.registry.devices import register
from maillage.registry.dynsec import DynsecClient
from maillage.registry.models import DeviceSpec, DeviceType
from maillage.registry.tenants import add_tenant
from maillage.stack import kafka
from maillage.stack.mosquitto import ADMIN_USER, GATEWAY_USER

T0 = datetime(2026, 11, 1, tzinfo=UTC)


class Device:
    """A registered device publishing QoS 1 over MQTT v5, waiting for its PUBACKs."""

    def __init__(self, services: Any, creds: Any) -> None:
        self.services, self.creds = services, creds
        self.acked: set[int] = set()
        self.conn: MqttConnection | None = None

    async def __aenter__(self) -> Device:
        self.conn, _ = await MqttConnection.connect(
            "127.0.0.1", self.services.mqtt_port, f"dev-{uuid.uuid4().hex[:8]}",
            username=self.creds.mqtt_username, password=self.creds.mqtt_password,
            on_ack=lambda acks: self.acked.update(a.packet_id for a in acks))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.conn is not None
        await self.conn.disconnect()

    async def send(self, seqs: range) -> None:
        assert self.conn is not None
        sent = set()
        for i in seqs:
            ts = (T0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")
            payload = orjson.dumps({"ts": ts, "seq": i, "values": {"active_power_w": float(i)}})
            sent.add(self.conn.publish(f"{self.creds.topic_prefix}up/json", payload, qos=1))
        async with asyncio.timeout(20):
            while not sent <= self.acked:
                await asyncio.sleep(0.01)


async def _kafka_seqs(bootstrap: str, tenant: str, want: int, timeout: float = 30) -> list[int]:
    """`seq` of every reading of `tenant` in Kafka (from the start), once `want` are there."""
    consumer = AIOKafkaConsumer(topics.READINGS, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seqs: list[int] = []
    try:
        async with asyncio.timeout(timeout):
            while len(seqs) < want:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        if r.key == f"{tenant}/meter-1".encode():
                            seqs.append(orjson.loads(r.value or b"{}")["seq"])
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return seqs


@pytest.fixture
def setup(services: Any, db_url: str) -> tuple[GatewayConfig, str, Any]:
    """A tenant with one meter, the Kafka topics, and a gateway config with its own client id."""
    kafka.ensure_topics_sync(services.kafka_bootstrap, 4)
    tenant = f"t{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant)
    with psycopg.connect(db_url) as conn, DynsecClient("127.0.0.1", services.mqtt_port, ADMIN_USER,
                                                      services.mqtt_creds.admin_password) as dyn:
        (creds,) = register(conn, [(tenant, DeviceSpec(device_id="meter-1", type=DeviceType.METER))], dynsec=dyn)
    config = GatewayConfig(
        mqtt_host="127.0.0.1", mqtt_port=services.mqtt_port, mqtt_username=GATEWAY_USER,
        mqtt_password=services.mqtt_creds.gateway_password, kafka_bootstrap=services.kafka_bootstrap,
        database_url=db_url, client_id=f"gw-test-{uuid.uuid4().hex[:6]}", shared=False,
        read_interval_ms=2, receive_max=200, max_future=timedelta(days=10_000))
    return config, tenant, creds


async def _unacked_in_session(services: Any, client_id: str) -> int:
    """Connect as the gateway's session (kept) and count what the broker redelivers."""
    got: list[mqtt5.PublishPacket] = []
    conn, connack = await MqttConnection.connect(
        "127.0.0.1", services.mqtt_port, client_id, username=GATEWAY_USER,
        password=services.mqtt_creds.gateway_password, clean_start=False,
        session_expiry=SESSION_KEPT, on_publish=got.extend)
    assert connack.session_present
    await asyncio.sleep(0.5)
    conn.abort()
    return len(got)


def test_reconnects_to_its_session_and_stops_cleanly(setup: Any, services: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Readings sent before, during and after a lost connection all reach Kafka; on stop, every
    message is acknowledged (the session holds nothing to redeliver) and the session stays."""
    config, tenant, creds = setup
    caplog.set_level(logging.INFO, logger="maillage.ingest.gateway")

    async def run() -> tuple[list[int], int, int]:
        gw = Gateway(config)
        stop = asyncio.Event()
        serving = asyncio.create_task(gw.run(stop))
        async with asyncio.timeout(10):
            while gw._conn is None:
                await asyncio.sleep(0.01)
        async with Device(services, creds) as dev:
            await dev.send(range(0, 300))
            assert gw._conn is not None
            gw._conn.abort()  # the link drops: messages in flight come back from the session
            await dev.send(range(300, 600))  # queued by the broker while the gateway is away
            async with asyncio.timeout(20):
                while "session present: True" not in caplog.text:
                    await asyncio.sleep(0.05)
            await dev.send(range(600, 700))
            seqs = await _kafka_seqs(config.kafka_bootstrap, tenant, 700)
        # Everything is in Kafka; once the connection holds nothing unacknowledged for a while
        # (redeliveries after the reconnect included), stopping must leave nothing behind.
        async with asyncio.timeout(20):
            quiet = 0
            while quiet < 5:
                await asyncio.sleep(0.1)
                quiet = quiet + 1 if gw._conn is not None and gw._conn.unacked == 0 else 0
        stop.set()
        await asyncio.wait_for(serving, 30)
        return seqs, gw.handled, await _unacked_in_session(services, config.client_id)

    seqs, handled, left = asyncio.run(run())
    assert set(seqs) == set(range(700))  # none lost (duplicates are allowed after a reconnect)
    assert handled >= 700
    assert left == 0
    assert "MQTT connection lost; reconnecting" in caplog.text
    assert "gateway stopped after" in caplog.text


def test_receive_maximum_bounds_what_the_connection_takes_in(setup: Any, services: Any) -> None:
    """The broker sends `receive_max` QoS 1 messages and waits (MQTT v5 flow control). Mosquitto
    2.0.11 then releases more than the freed quota on each PUBACK, so the connection stops
    reading at `receive_max` unacknowledged and resumes at half: nothing is lost meanwhile."""
    config, _, creds = setup

    async def run() -> tuple[int, int, int, bool, list[int]]:
        got: list[int] = []
        sub, _ = await MqttConnection.connect(
            "127.0.0.1", services.mqtt_port, config.client_id, username=GATEWAY_USER,
            password=config.mqtt_password, receive_max=25,
            on_publish=lambda ps: got.extend(p.packet_id or 0 for p in ps))
        await sub.subscribe([(f"{creds.topic_prefix}up/#", 1)])
        async with Device(services, creds) as dev:
            await dev.send(range(300))
        await asyncio.sleep(0.5)
        first = len(got)
        sub.ack(got[:10])  # 15 left unacknowledged: more than half, still not reading
        await asyncio.sleep(0.5)
        after_ten = len(got)
        paused = not sub.reading
        acked = 10
        async with asyncio.timeout(10):
            while len(got) < 300:
                sub.ack(got[acked:])
                acked = len(got)
                await asyncio.sleep(0.05)
        sub.ack(got[acked:])
        left = sub.unacked
        await sub.disconnect()
        return first, after_ten, left, paused, got

    first, after_ten, left, paused, got = asyncio.run(run())
    assert first == 25 and after_ten == 25 and paused
    assert len(got) == len(set(got)) == 300 and left == 0
