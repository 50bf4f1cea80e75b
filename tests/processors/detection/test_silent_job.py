"""The silence job on the real PostgreSQL: anomaly rows and outbox, lock, the wall-clock watch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest

from maillage.db.anomalies import SILENT_LOCK
from maillage.db.detection import save_device_states
from maillage.db.migrate import migrate
from maillage.processors.detection.silent_job import run_once, watch
from maillage.registry.devices import add_devices
from maillage.registry.models import DeviceSpec, DeviceType
from maillage.registry.tenants import add_tenant

S = 1_000_000
T0 = 1_780_000_000 * S
TENANT = "commune"


@pytest.fixture
def db(fresh_db_url: str) -> Iterator[str]:
    """A database of its own (the job reads every tenant's devices), with 200 lamps of one
    cabinet, the cabinet, a care door sensor and 60 meters."""
    migrate(fresh_db_url)
    specs = [DeviceSpec(device_id=f"lamp-{i:03d}", type=DeviceType.STREETLIGHT,
                        meta={"cabinet": "cab-1"}, expected_interval_s=10) for i in range(200)]
    specs.append(DeviceSpec(device_id="cab-1", type=DeviceType.LIGHTING_CABINET,
                            expected_interval_s=60))
    specs.append(DeviceSpec(device_id="door-1", type=DeviceType.CARE_DOOR, dwelling="d1",
                            expected_interval_s=600))
    specs += [DeviceSpec(device_id=f"meter-{i}", type=DeviceType.METER) for i in range(60)]
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=TENANT)
        add_devices(conn, tenant=TENANT, specs=specs, dynsec=None)
    yield fresh_db_url


def _heard(conn: psycopg.Connection, devices: dict[str, int], interval_s: float | None = None) -> None:
    """What the detection processor checkpoints: each device's last receive time (µs)."""
    with conn.transaction():
        save_device_states(conn=conn, rows=[(TENANT, d, b"{}", rx, rx, interval_s)
                                            for d, rx in devices.items()])


def _meters(now: int) -> dict[str, int]:
    return {f"meter-{i}": now - i * S for i in range(60)}


def _anomalies(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT device_id, kind, grp, care, end_ts IS NULL, evidence->'silent' "
                        "FROM anomalies ORDER BY device_id, kind").fetchall()


def _outbox(conn: psycopg.Connection) -> list[str]:
    return [r[0].split(":")[1] for r in
            conn.execute("SELECT event_id FROM anomaly_outbox ORDER BY seq").fetchall()]


def test_two_hundred_lamps_give_one_row_for_the_cabinet(db: str) -> None:
    """Acceptance 4 through the table: one open group anomaly, one outbox open; back closes it."""
    with psycopg.connect(db, autocommit=True) as conn:
        _heard(conn, {f"lamp-{i:03d}": T0 - (i % 10) * S for i in range(200)}, 10.0)
        _heard(conn, {"cab-1": T0 - 30 * S}, 60.0)
        for step in range(0, 5 * 60, 5):  # every 5 s for 5 minutes; the meters go on reporting
            now = T0 + step * S
            _heard(conn, _meters(now), 60.0)
            assert run_once(conn, now) is not None
        rows = _anomalies(conn)
        assert rows == [("cab-1", "group_offline", "cabinet:cab-1", False, True, 201)]
        assert _outbox(conn) == ["open", "update"]  # the cabinet itself joined its lamps later
        back = T0 + 6 * 60 * S
        _heard(conn, {f"lamp-{i:03d}": back for i in range(200)}, 10.0)
        _heard(conn, _meters(back), 60.0)
        out = run_once(conn, back + S)
        # The lamps are back; the cabinet itself is still silent: now a device of its own.
        assert out is not None and [(t.change, t.anomaly.kind, t.anomaly.device_id)
                                    for t in out] == [("close", "group_offline", "cab-1"),
                                                      ("open", "device_offline", "cab-1")]
        assert [r[:2] + r[4:5] for r in _anomalies(conn)] == [
            ("cab-1", "device_offline", True), ("cab-1", "group_offline", False)]
        assert _outbox(conn) == ["open", "update", "close", "open"]
        assert run_once(conn, back + 2 * S) == []


def test_single_lamp_and_care_sensor(db: str) -> None:
    """One silent lamp: a device anomaly; a silent care sensor: a care anomaly; back closes."""
    with psycopg.connect(db, autocommit=True) as conn:
        _heard(conn, {f"lamp-{i:03d}": T0 for i in range(200)}, 10.0)
        _heard(conn, {"door-1": T0 - 31 * 60 * S}, 5.0)  # events fast, heartbeat every 10 min
        _heard(conn, {"lamp-007": T0 - 2 * 60 * S}, 10.0)
        run_once(conn, T0 + S)
        assert _anomalies(conn) == [("door-1", "device_offline", None, True, True, None),
                                    ("lamp-007", "device_offline", None, False, True, None)]
        run_once(conn, T0 + 2 * S)  # the same round again: nothing new
        assert _outbox(conn) == ["open", "open"]
        _heard(conn, {"lamp-007": T0 + 3 * S}, 10.0)
        out = run_once(conn, T0 + 4 * S)
        assert out is not None and [(t.change, t.anomaly.device_id, t.anomaly.end_us)
                                    for t in out] == [("close", "lamp-007", T0 + 3 * S)]
        assert _outbox(conn) == ["open", "open", "close"]


def test_never_seen_devices_are_not_offline(db: str) -> None:
    """Registered devices that never sent anything raise nothing, however long."""
    with psycopg.connect(db, autocommit=True) as conn:
        assert run_once(conn, T0 + 86_400 * S) == []
        assert _anomalies(conn) == []


def test_one_round_at_a_time(db: str) -> None:
    """While another process holds the lock, a round does nothing."""
    with psycopg.connect(db, autocommit=True) as conn, psycopg.connect(db) as other:
        _heard(conn, {"lamp-007": T0 - 5 * 60 * S}, 10.0)
        other.execute("SELECT pg_advisory_xact_lock(%s)", (SILENT_LOCK,))
        assert run_once(conn, T0) is None
        other.rollback()
        out = run_once(conn, T0)
        assert out is not None and len(out) == 1


def test_watch_on_the_wall_clock(db: str) -> None:
    """`watch` flags a device silent for ten minutes now, and stops when asked."""
    now = time.time_ns() // 1000
    with psycopg.connect(db, autocommit=True) as conn:
        _heard(conn, {"lamp-001": now - 10 * 60 * S, "lamp-002": now}, 10.0)

    async def scenario() -> list[tuple]:
        stop = asyncio.Event()
        task = asyncio.create_task(watch(database_url=db, stop=stop, period_s=0.2))
        found: list[tuple] = []
        with psycopg.connect(db, autocommit=True) as conn:
            for _ in range(100):
                found = _anomalies(conn)
                if found:
                    break
                await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 10)
        return found

    assert asyncio.run(scenario()) == [("lamp-001", "device_offline", None, False, True, None)]
