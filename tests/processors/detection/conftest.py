"""Fixtures of the detection processor tests: topics, a tenant with devices, Kafka helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from maillage import topics
from maillage.envelope import Envelope, SourceFormat
from maillage.processors.kafka_topics import partitions_of
from maillage.registry.tenants import add_tenant
from maillage.stack import kafka

T0 = 1_795_000_000_000_000  # 2026-11-19, epoch µs
MIN = 60_000_000


@pytest.fixture
def det_tenant(db_url: str, services: Any) -> str:
    """A fresh tenant with a meter `m1`, a care hub `h1` and four lamps of cabinet `c1`."""
    kafka.ensure_topics_sync(services.kafka_bootstrap, 2)
    name = f"t{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=name)
        rows = [("m1", "meter", None, "{}"), ("h1", "care_hub", "apt-1", "{}"),
                ("c1", "lighting_cabinet", None, "{}")]
        rows += [(f"l{i}", "streetlight", None, '{"cabinet": "c1"}') for i in range(4)]
        for did, dtype, dwelling, meta in rows:
            conn.execute("INSERT INTO devices (tenant_id, device_id, type, mqtt_username, dwelling, meta) "
                         "VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
                         (name, did, dtype, f"{name}-{did}", dwelling, meta))
    return name


def reading(tenant: str, device: str, ts_us: int, **values: float) -> Envelope:
    return Envelope.trusted(tenant, device, "reading", ts_us, ts_us + 1000, SourceFormat.JSON,
                            dict(values), {})


def fall(tenant: str, device: str, ts_us: int) -> Envelope:
    return Envelope.trusted(tenant, device, "event", ts_us, ts_us + 1000, SourceFormat.EVENT, {}, {},
                            event="fall_detected")


async def produce(bootstrap: str, envs: Iterable[Envelope | tuple[str, bytes, bytes]]) -> None:
    """Envelopes to their topic (keyed by device), or raw (topic, key, value) records."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for e in envs:
            if isinstance(e, Envelope):
                await producer.send(topics.KIND_TOPIC[e.kind], e.to_kafka(), key=e.key)
            else:
                await producer.send(e[0], e[2], key=e[1])
        await producer.flush()
    finally:
        await producer.stop()


def produce_sync(bootstrap: str, envs: Iterable[Envelope | tuple[str, bytes, bytes]]) -> None:
    asyncio.run(produce(bootstrap, list(envs)))


async def read_anomalies(bootstrap: str, tenant: str) -> list[dict[str, Any]]:
    """Every transition of `tenant` on `maillage.anomalies` (the whole topic is read)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(topics.ANOMALIES, p) for p in await partitions_of(bootstrap, topics.ANOMALIES)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    d = orjson.loads(r.value or b"{}")
                    if d.get("tenant") == tenant:
                        out.append(d)
    finally:
        await consumer.stop()
    return out


def anomaly_rows(db_url: str, tenant: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT id, device_id, kind, severity, end_ts IS NULL, grp, care, evidence FROM anomalies "
            "WHERE tenant_id = %s ORDER BY start_ts, kind", (tenant,)).fetchall()
