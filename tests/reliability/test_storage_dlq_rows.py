"""Holes 5 and 7: what storage keeps of the records it cannot store as rows.

Hole 5, on dc046fb: `rejected` was keyed by the Kafka position (`ON CONFLICT (kafka_offset) DO
NOTHING`); once the embedded broker restarted its offsets at 0, a new rejection at a position
already seen was discarded (and counted as stored): `test_rejections_keyed_by_what_cannot_repeat`
found one row instead of two.
Hole 7, on dc046fb: the reading, event and status of a device deleted after the gateway accepted
them were skipped (a log line at most) and their offsets committed:
`test_records_of_a_deleted_device_go_to_the_dlq` found no `rejected` rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.envelope import DlqRecord, to_us
from maillage.processors.storage import StorageSink

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _record(topic: str, offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 0, offset, 0, 0, b"k", value, None, 1, len(value), ())


def _dlq(tenant: str, payload: bytes, rx: datetime) -> bytes:
    return DlqRecord(mqtt_topic=f"maillage/{tenant}/m1/up/json", tenant=tenant, device_id="m1",
                     received_at=rx, reason="malformed", detail="not JSON",
                     payload=payload).to_kafka()


def _rejected(db_url: str, tenant: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT device_id, reason, payload FROM rejected WHERE tenant_id = %s "
                            "ORDER BY id", (tenant,)).fetchall()


def test_rejections_keyed_by_what_cannot_repeat(db_url: str, tenant: str) -> None:
    """Two rejections at the same Kafka position (a restarted broker) are both kept; the same
    DLQ record consumed twice (a replay) is kept once."""
    sink = StorageSink(db_url)
    try:
        sink.add(_record(topics.DLQ, 7, _dlq(tenant, b"first", T0)))
        sink.flush()
        # The embedded Kafka lost its log: offsets start again, position 7 comes back.
        sink.add(_record(topics.DLQ, 7, _dlq(tenant, b"second", T0 + timedelta(seconds=5))))
        sink.flush()
        # Both consumed again, at other positions (a replay of the DLQ topic): nothing new.
        sink.add(_record(topics.DLQ, 3, _dlq(tenant, b"first", T0)))
        sink.add(_record(topics.DLQ, 4, _dlq(tenant, b"second", T0 + timedelta(seconds=5))))
        sink.flush()
    finally:
        sink.close()
    assert [bytes(r[2]) for r in _rejected(db_url, tenant)] == [b"first", b"second"]


def test_records_of_a_deleted_device_go_to_the_dlq(db_url: str, tenant: str) -> None:
    """A reading, an event and a status of an unregistered device: each in `rejected`, with the
    reason `unknown_device` and what the record held."""
    doc = {"tenant": tenant, "device_id": "gone", "ts": to_us(T0), "rx": to_us(T0), "fmt": "json"}
    sink = StorageSink(db_url)
    try:
        sink.add(_record(topics.READINGS, 1, orjson.dumps({**doc, "values": {"voltage_v": 229.0}})))
        sink.add(_record(topics.EVENTS, 1, orjson.dumps({**doc, "kind": "event", "fmt": "event",
                                                         "event": "fall_detected", "values": {}})))
        sink.add(_record(topics.STATUS, 1, orjson.dumps({**doc, "kind": "status", "fmt": "status",
                                                         "event": "offline", "values": {}})))
        sink.flush()
        sink.flush()  # nothing twice
    finally:
        sink.close()
    rows = _rejected(db_url, tenant)
    assert [(r[0], r[1]) for r in rows] == [("gone", "unknown_device")] * 3
    payloads = [orjson.loads(bytes(r[2])) for r in rows]
    assert payloads[0]["values"] == {"voltage_v": 229.0}
    assert payloads[1]["event"] == "fall_detected" and payloads[2]["event"] == "offline"
