"""Hole 6: a message without a device time, published once, is stored once even when the broker
redelivers it (the gateway crashed after Kafka had it, before its PUBACK).

On dc046fb such a message (an event without `ts`, a TIC historique frame) was timed by each
receipt: the redelivered copy got a second time and a second row (two falls). Now the gateway
marks copies the broker flags DUP, and storage keeps the first: `test_a_redelivered_copy_is_stored_once`
found two events and two readings there.

The gateway's part runs on a real `Gateway` object fed MQTT PUBLISH packets (the broker's DUP
flag set as a broker sets it); storage runs on the real database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import mqtt5
from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.ingest.gateway import Gateway, GatewayConfig
from maillage.ingest.registry_cache import KnownDevice, RegistryCache
from maillage.ingest.validate import Ingest
from maillage.processors.storage import StorageSink
from tests.reliability.conftest import register


def _group(label: str, data: str) -> bytes:
    """A TIC historique group with its checksum (sum of `LABEL SP DATA`, & 0x3F, + 0x20)."""
    body = f"{label} {data}"
    return f"\n{body} {chr((sum(body.encode()) & 0x3F) + 0x20)}\r".encode()


TIC = b"\x02" + b"".join(_group(k, v) for k, v in (
    ("ADCO", "021728123456"), ("OPTARIF", "BASE"), ("ISOUSC", "30"), ("BASE", "012345678"),
    ("PTEC", "TH.."), ("IINST", "002"), ("IMAX", "030"), ("PAPP", "00420"))) + b"\x03"


class Collect:
    """Takes the gateway's Kafka records (what it would produce) in order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def add(self, topic: str, key: bytes, value: bytes, timestamp_ms: int) -> None:
        self.records.append((topic, key, value))

    def note(self, token: Any, n: int) -> None:
        pass


def _gateway(tenant: str) -> Gateway:
    gw = Gateway(GatewayConfig(mqtt_host="-", mqtt_port=0, mqtt_username="-", mqtt_password="-",
                               kafka_bootstrap="-", database_url=""))
    floor = datetime(2010, 1, 1, tzinfo=UTC)
    gw.ingest = Ingest(RegistryCache.in_memory({
        (tenant, "pendant-1"): KnownDevice(1, "care_button", floor),
        (tenant, "linky-1"): KnownDevice(2, "meter", floor)}), max_future=timedelta(minutes=5))
    return gw


def _delivery(gw: Gateway, tenant: str, at: float, duplicate: bool) -> list[ConsumerRecord[bytes, bytes]]:
    """One broker delivery of the two messages, received at `at` (epoch s)."""
    packets = [mqtt5.PublishPacket(f"maillage/{tenant}/pendant-1/up/event", b'{"event":"fall_detected"}',
                                   qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=7, duplicate=duplicate),
               mqtt5.PublishPacket(f"maillage/{tenant}/linky-1/up/tic", TIC,
                                   qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=8, duplicate=duplicate)]
    out = Collect()
    gw._convert(0, at, packets, out)  # type: ignore[arg-type]
    assert [t for t, _, _ in out.records] == [topics.EVENTS, topics.READINGS], out.records
    return [ConsumerRecord(t, 0, i, 0, 0, k, v, None, len(k), len(v), ())
            for i, (t, k, v) in enumerate(out.records)]


def _counts(db_url: str, tenant: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(db_url) as conn:
        ev = conn.execute("SELECT count(*) FROM events e JOIN devices d ON d.pk = e.device_pk "
                          "WHERE d.tenant_id = %s", (tenant,)).fetchone()
        rd = conn.execute("SELECT count(DISTINCT r.ts) FROM readings r JOIN devices d "
                          "ON d.pk = r.device_pk WHERE d.tenant_id = %s", (tenant,)).fetchone()
    assert ev is not None and rd is not None
    return ev[0], rd[0]


def test_a_redelivered_copy_is_stored_once(db_url: str, tenant: str) -> None:
    register(db_url, tenant, [("pendant-1", "care_button", {}), ("linky-1", "meter", {})])
    gw = _gateway(tenant)
    t0 = datetime.now(UTC).timestamp() - 600
    sink = StorageSink(db_url)
    try:
        for rec in _delivery(gw, tenant, t0, duplicate=False):
            sink.add(rec)
        sink.flush()
        # The gateway crashed before its PUBACK; the broker sends the same message again, DUP.
        gw = _gateway(tenant)
        for rec in _delivery(gw, tenant, t0 + 20, duplicate=True):
            sink.add(rec)
        sink.flush()
        assert _counts(db_url, tenant) == (1, 1)
        # The device publishes the same content again later (a new message, not a copy): kept.
        for rec in _delivery(gw, tenant, t0 + 60, duplicate=False):
            sink.add(rec)
        sink.flush()
        assert _counts(db_url, tenant) == (2, 2)
    finally:
        sink.close()
