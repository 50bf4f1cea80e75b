"""What a processor asks the cluster about a topic.

An aiokafka consumer keeps metadata only for the topics it follows: before it is assigned,
`partitions_for_topic` answers None on Apache Kafka (Tansu happens to send every topic), so the
partitions of a topic are asked for explicitly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of `topic`, sorted; empty when it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for t in await admin.describe_topics([topic]):
            if t["topic"] == topic and t["error_code"] == 0:
                return sorted(p["partition"] for p in t["partitions"])
        return []
    finally:
        await admin.close()


async def group_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Records of `topics` not yet committed by consumer group `group` (all of them if it committed none)."""
    tps = [TopicPartition(t, p) for t in topics for p in await partitions_of(bootstrap, t)]
    if not tps:
        return 0
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await admin.start()
    try:
        await consumer.start()
        try:
            committed = await _group_offsets(admin, group, tps)
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    lag = 0
    for tp in tps:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
        lag += max(0, ends[tp] - done)
    return lag


async def _group_offsets(admin: AIOKafkaAdminClient, group: str, tps: list[TopicPartition],
                         timeout_s: float = 30.0) -> dict[TopicPartition, Any]:
    """The group's committed offsets; the coordinator is waited for (a cluster that never had a
    consumer group creates `__consumer_offsets` on the first request and answers "not available"
    until it exists)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return dict(await admin.list_consumer_group_offsets(group, partitions=tps))
        except GroupCoordinatorNotAvailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
