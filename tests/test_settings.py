"""Settings that are derived rather than given."""

from __future__ import annotations

from maillage.config import Settings


def test_topic_partitions_follow_the_broker_unless_given() -> None:
    """Embedded Tansu: one partition per storage process, at least 2; external Kafka: 8; a value set wins."""
    assert Settings().topic_partitions(embedded=True) == 2
    assert Settings(storage_processes=3).topic_partitions(embedded=True) == 3
    assert Settings().topic_partitions(embedded=False) == 8
    assert Settings(kafka_partitions=5).topic_partitions(embedded=True) == 5
    assert Settings(kafka_partitions=5).topic_partitions(embedded=False) == 5
