"""The gateway's handling of one socket chunk: receive times, records, what gets acknowledged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import mqtt5

from maillage import topics
from maillage.ingest.gateway import DROPPED_TOPIC, Gateway, GatewayConfig


class FakeOutbox:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, int]] = []
        self.tokens: list[tuple[Any, int]] = []

    def add(self, topic: str, key: bytes, value: bytes, timestamp_ms: int) -> None:
        self.records.append((topic, key, value, timestamp_ms))

    def note(self, token: Any, messages: int) -> None:
        self.tokens.append((token, messages))


def _gateway() -> tuple[Gateway, list[datetime]]:
    gw = Gateway(GatewayConfig(mqtt_host="-", mqtt_port=1, mqtt_username="-", mqtt_password="-",
                               kafka_bootstrap="-", database_url="postgresql://unused"))
    seen: list[datetime] = []

    def records(topic: str, payload: bytes, received: datetime) -> list[tuple[str, bytes, bytes]]:
        seen.append(received)
        return [(topics.READINGS, topic.encode(), payload)]

    gw._records = records  # type: ignore[method-assign]
    return gw, seen


def _publish(i: int, topic: str = "maillage/t/meter-1/up/tic", qos: int = 1) -> mqtt5.PublishPacket:
    return mqtt5.PublishPacket(topic, b"frame %d" % i, qos=mqtt5.QoS(qos), packet_id=i if qos else None)


def test_receive_times_are_unique_and_increasing_within_and_across_chunks() -> None:
    """Several frames of one device in one chunk (a TIC historique frame's time is its receive
    time) get distinct times; a later chunk never goes back, even if the clock does."""
    gw, seen = _gateway()
    box = FakeOutbox()
    t = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()
    gw._convert(1, t, [_publish(i) for i in range(1, 6)], box)  # type: ignore[arg-type]
    gw._convert(1, t - 0.5, [_publish(i) for i in range(6, 9)], box)  # type: ignore[arg-type]
    gw._convert(1, t + 1.0, [_publish(i) for i in range(9, 5009)], box)  # type: ignore[arg-type]
    assert seen[0] == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert all(a < b for a, b in zip(seen, seen[1:], strict=False))
    assert seen[8] == datetime(2026, 11, 23, 12, 0, 1, tzinfo=UTC)
    assert (seen[-1] - seen[8]).total_seconds() == 4999e-6
    assert [r[2] for r in box.records[:3]] == [b"frame 1", b"frame 2", b"frame 3"]
    assert box.records[0][3] == int(t * 1000)
    assert [n for _, n in box.tokens] == [5, 3, 5000]


def test_broker_messages_are_watched_not_produced_and_qos1_ones_are_still_acknowledged() -> None:
    gw, seen = _gateway()
    box = FakeOutbox()
    chunk = [mqtt5.PublishPacket(DROPPED_TOPIC, b"7", qos=mqtt5.QoS.AT_MOST_ONCE),
             _publish(11), _publish(0, qos=0),
             mqtt5.PublishPacket("$SYS/other", b"x", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=12)]
    gw._convert(3, 1e9, chunk, box)  # type: ignore[arg-type]
    assert gw._dropped_seen == 7
    assert len(box.records) == len(seen) == 2  # the two device messages
    assert box.tokens == [((3, [11, 12], 2), 2)]
    sys_only = [mqtt5.PublishPacket(DROPPED_TOPIC, b"7", qos=mqtt5.QoS.AT_MOST_ONCE)]
    gw._convert(3, 1e9, sys_only, box)  # type: ignore[arg-type]
    assert len(box.tokens) == 1  # nothing to produce nor acknowledge
