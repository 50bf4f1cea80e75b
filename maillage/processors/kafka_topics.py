"""What a processor asks the cluster about a topic.

An aiokafka consumer keeps metadata only for the topics it follows: before it is assigned,
`partitions_for_topic` answers None on Apache Kafka (Tansu happens to send every topic), so the
partitions of a topic are asked for explicitly.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient


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
