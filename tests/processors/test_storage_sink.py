"""The storage sink on a real database: binary COPY, redeliveries, rollup queue, last_seen_at, events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.db import rollups
from maillage.envelope import to_us
from maillage.processors.storage import StorageSink

T0 = datetime(2025, 11, 3, 10, 7, 30, tzinfo=UTC)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def devices(conn: psycopg.Connection) -> tuple[str, dict[str, int]]:
    """A tenant with two meters; returns the tenant and device_id -> pk."""
    tenant = f"t{uuid.uuid4().hex[:12]}"
    conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s)", (tenant, tenant))
    pks = {}
    for d in ("m1", "m2"):
        pks[d] = conn.execute(
            "INSERT INTO devices (tenant_id, device_id, type, mqtt_username) "
            "VALUES (%s, %s, 'meter', %s) RETURNING pk", (tenant, d, f"{tenant}/{d}")).fetchone()[0]
    return tenant, pks


def _record(offset: int, **env: object) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps(env)
    return ConsumerRecord(topics.READINGS, 0, offset, 0, 0, b"k", value, None, 1, len(value), ())


def _reading(tenant: str, device: str, ts: datetime, values: dict[str, float], *,
             rx: datetime | None = None, seq: int | None = None, **extra: object) -> dict[str, object]:
    env: dict[str, object] = {"tenant": tenant, "device_id": device, "kind": "reading", "ts": to_us(ts),
                              "rx": to_us(rx or ts + timedelta(seconds=2)), "fmt": "json",
                              "values": values, **extra}
    if seq is not None:
        env["seq"] = seq
    return env


def _rows(conn: psycopg.Connection, pk: int) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT m.name, r.ts, r.value, r.received_at, r.seq FROM readings r "
        "JOIN metrics m ON m.id = r.metric_id WHERE r.device_pk = %s ORDER BY r.ts, m.name",
        (pk,)).fetchall()


def _queued(conn: psycopg.Connection, pk: int) -> set[tuple[str, datetime]]:
    names = dict(conn.execute("SELECT id, name FROM metrics").fetchall())
    return {(names[m], b) for m, b in rollups.queued(conn, pk)}


def _sink(db_url: str, envs: list[dict[str, object]]) -> StorageSink:
    sink = StorageSink(db_url)
    for i, env in enumerate(envs):
        sink.add(_record(i, **env))
    return sink


def test_a_batch_is_stored_exactly_with_its_queue_rows(
    db_url: str, conn: psycopg.Connection, devices: tuple[str, dict[str, int]],
) -> None:
    """Times to the microsecond, NULL and set seq, integers as floats, one queue row per bucket."""
    tenant, pks = devices
    t1 = T0 + timedelta(minutes=10, microseconds=123_457)  # the next quarter-hour
    envs = [_reading(tenant, "m1", T0, {"energy_import_wh": 12_000_000, "voltage_v": 231.5}, seq=7),
            _reading(tenant, "m1", t1, {"energy_import_wh": 12_000_010.25}),
            _reading(tenant, "m2", T0, {"active_power_w": -3.0}, seq=2**40)]
    sink = _sink(db_url, envs)
    assert sink.full() is False
    sink.flush()
    rx = timedelta(seconds=2)
    assert _rows(conn, pks["m1"]) == [
        ("energy_import_wh", T0, 12_000_000.0, T0 + rx, 7), ("voltage_v", T0, 231.5, T0 + rx, 7),
        ("energy_import_wh", t1, 12_000_010.25, t1 + rx, None)]
    assert _rows(conn, pks["m2"]) == [("active_power_w", T0, -3.0, T0 + rx, 2**40)]
    q0, q1 = datetime(2025, 11, 3, 10, 0, tzinfo=UTC), datetime(2025, 11, 3, 10, 15, tzinfo=UTC)
    assert _queued(conn, pks["m1"]) == {("energy_import_wh", q0), ("voltage_v", q0),
                                        ("energy_import_wh", q1)}
    assert sink.stored == 4 and sink.duplicates == 0
    sink.close()


def test_redelivered_and_in_batch_duplicates_keep_the_first_value(
    db_url: str, conn: psycopg.Connection, devices: tuple[str, dict[str, int]],
) -> None:
    """A replayed batch and a key twice in one batch go through the idempotent path."""
    tenant, pks = devices
    first = [_reading(tenant, "m1", T0, {"voltage_v": 230.0}, rx=T0)]
    sink = _sink(db_url, first)
    sink.flush()
    while rollups.refresh_rollups(conn):
        pass
    assert _queued(conn, pks["m1"]) == set()
    later = T0 + timedelta(hours=2)
    again = [_reading(tenant, "m1", T0, {"voltage_v": 999.0}, rx=T0 + timedelta(seconds=1)),
             _reading(tenant, "m1", later, {"voltage_v": 2.0}, rx=later + timedelta(seconds=5)),
             _reading(tenant, "m1", later, {"voltage_v": 1.0}, rx=later)]
    for i, env in enumerate(again):
        sink.add(_record(10 + i, **env))
    sink.flush()
    assert [r[2] for r in _rows(conn, pks["m1"])] == [230.0, 1.0]
    assert sink.stored == 2 and sink.duplicates == 2
    # Only the new row's bucket is queued: the duplicate changed nothing.
    assert _queued(conn, pks["m1"]) == {("voltage_v", datetime(2025, 11, 3, 12, 0, tzinfo=UTC))}
    sink.close()


def test_last_seen_written_at_most_once_a_minute(
    db_url: str, conn: psycopg.Connection, devices: tuple[str, dict[str, int]],
) -> None:
    tenant, pks = devices

    def seen() -> datetime | None:
        return conn.execute("SELECT last_seen_at FROM devices WHERE pk = %s", (pks["m1"],)).fetchone()[0]

    sink = StorageSink(db_url)
    for i, dt in enumerate((0, 30, 61)):
        ts = T0 + timedelta(seconds=dt)
        sink.add(_record(i, **_reading(tenant, "m1", ts, {"voltage_v": 1.0}, rx=ts)))
        sink.flush()
        assert seen() == (T0 if dt < 61 else ts)
    # Another process wrote a newer time: an older one never overwrites it.
    conn.execute("UPDATE devices SET last_seen_at = %s WHERE pk = %s", (T0 + timedelta(hours=1), pks["m1"]))
    ts = T0 + timedelta(minutes=5)
    sink.add(_record(9, **_reading(tenant, "m1", ts, {"voltage_v": 1.0}, rx=ts)))
    sink.flush()
    assert seen() == T0 + timedelta(hours=1)
    sink.close()


def test_unknown_devices_skipped_and_lamp_status_kept_as_event(
    db_url: str, conn: psycopg.Connection, devices: tuple[str, dict[str, int]],
) -> None:
    tenant, pks = devices
    envs = [_reading(tenant, "gone", T0, {"voltage_v": 1.0}),
            _reading(tenant, "m2", T0, {"lamp_power_w": 40.0}, attrs={"status": "ok"}),
            _reading(tenant, "m2", T0, {"lamp_power_w": 41.0}, attrs={"status": "lampFailure"})]
    sink = _sink(db_url, envs)
    sink.flush()
    assert [r[2] for r in _rows(conn, pks["m2"])] == [40.0]
    events = conn.execute("SELECT event, attrs, ts FROM events WHERE device_pk = %s", (pks["m2"],)).fetchall()
    assert events == [("lamp_status", {"status": "ok"}, T0)]
    assert sink.duplicates == 1  # the in-batch duplicate
    # The unknown device's reading is not dropped silently: it is in the DLQ table (issue 15).
    assert conn.execute("SELECT device_id, reason FROM rejected WHERE tenant_id = %s",
                        (tenant,)).fetchall() == [("gone", "unknown_device")]
    sink.close()


def test_events_redelivered_keep_the_first_and_new_ones_are_stored(
    db_url: str, conn: psycopg.Connection, devices: tuple[str, dict[str, int]],
) -> None:
    tenant, pks = devices
    fall = {"tenant": tenant, "device_id": "m1", "kind": "event", "event": "fall_detected",
            "ts": to_us(T0), "rx": to_us(T0), "fmt": "event", "values": {"confidence": 0.9},
            "attrs": {"room": "kitchen"}}
    sink = _sink(db_url, [fall])
    sink.flush()
    later = {**fall, "ts": to_us(T0 + timedelta(minutes=1)), "attrs": {"room": "hall"}}
    for i, env in enumerate([{**fall, "attrs": {"room": "bedroom"}}, later]):
        sink.add(_record(5 + i, **env))
    sink.flush()
    rows = conn.execute("SELECT ts, event, attrs, seq FROM events WHERE device_pk = %s ORDER BY ts",
                        (pks["m1"],)).fetchall()
    assert rows == [(T0, "fall_detected", {"room": "kitchen", "values": {"confidence": 0.9}}, None),
                    (T0 + timedelta(minutes=1), "fall_detected",
                     {"room": "hall", "values": {"confidence": 0.9}}, None)]
    sink.close()
