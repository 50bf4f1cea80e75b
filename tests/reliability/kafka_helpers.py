"""Real Kafka helpers for the reliability tests: fresh topics, producing, reading back, offsets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def new_topics(bootstrap: str, n: int, partitions: int = 1) -> list[str]:
    names = [f"rel-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in names])
    finally:
        await admin.close()
    return names


async def produce(bootstrap: str, topic: str, values: Sequence[tuple[bytes, bytes]]) -> None:
    """(key, value) pairs, in order, acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, n: int, timeout: float = 30) -> list[bytes]:
    """The first `n` values of a one-partition topic (fewer if they do not come in time)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list[bytes] = []
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while len(out) < n and loop.time() < end:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out += [r.value for r in records if r.value is not None]
    finally:
        await consumer.stop()
    return out


async def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
