"""Settings that are derived rather than given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from maillage.config import PROCESSORS, Settings
from maillage.stack.state import StackState, kafka_fetch_wait_ms


def test_topic_partitions_follow_the_broker_unless_given() -> None:
    """Embedded Tansu: one partition per storage process, at least 2; external Kafka: 8; a value set wins."""
    assert Settings().topic_partitions(embedded=True) == 2
    assert Settings(storage_processes=3).topic_partitions(embedded=True) == 3
    assert Settings().topic_partitions(embedded=False) == 8
    assert Settings(kafka_partitions=5).topic_partitions(embedded=True) == 5
    assert Settings(kafka_partitions=5).topic_partitions(embedded=False) == 5


def test_processors_all_or_a_checked_list() -> None:
    """`MAILLAGE_PROCESSORS`: every processor by default, else the ones named; a typo is refused
    with the names it could have been."""
    assert all(Settings().runs(p) for p in PROCESSORS)
    some = Settings(processors=" storage, detection ")
    assert [p for p in PROCESSORS if some.runs(p)] == ["storage", "detection"]
    for bad in ("storage,detektion", " , "):
        with pytest.raises(ValidationError, match="storage, maintenance"):
            Settings(processors=bad)


def test_kafka_fetch_wait_is_a_long_poll_except_on_tansu(tmp_path: Path) -> None:
    """Apache Kafka answers a waiting fetch when a record arrives: 500 ms costs no latency; the
    embedded Tansu answers when the wait ends: 50 ms."""
    assert kafka_fetch_wait_ms(Settings(kafka_bootstrap="k:9092")) == 500
    for kind, wait in (("apache", 500), ("tansu", 50)):
        StackState(kafka_kind=kind, up_pid=os.getpid()).write(tmp_path)
        assert kafka_fetch_wait_ms(Settings(data_dir=tmp_path)) == wait
