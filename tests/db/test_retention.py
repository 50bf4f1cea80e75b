"""Partitions made ahead (and rescued from DEFAULT), and retention per tenant and kind of data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from maillage.db import rollups
from maillage.db.migrate import migrate
from maillage.db.partitions import ensure_partitions, partitions
from maillage.db.readings import query_readings
from maillage.db.retention import apply_retention, retention, set_retention

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
E = "energy_import_wh"


@pytest.fixture
def own(fresh_db_url: str) -> Iterator[psycopg.Connection]:
    """A migrated database of this test's own: partitions are dropped here."""
    migrate(fresh_db_url)
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        yield conn


def _device(conn: psycopg.Connection, tenant: str, device: str, type: str = "meter") -> int:
    conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                 (tenant, tenant))
    row = conn.execute(
        "INSERT INTO devices (tenant_id, device_id, type, mqtt_username, site) "
        "VALUES (%s, %s, %s, %s, 'here') RETURNING pk",
        (tenant, device, type, f"{tenant}-{device}")).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def put_times(own: psycopg.Connection, write: Callable[..., int]) -> Callable[[int, list[datetime]], None]:
    """`put_times(pk, times)`: index readings at these times, each received when measured."""

    def put(pk: int, times: list[datetime]) -> None:
        write(own, [(pk, E, ts, 1000.0 * i, ts, None) for i, ts in enumerate(times)])

    return put


def _count(conn: psycopg.Connection, table: str, pk: int) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table} WHERE device_pk = %s", (pk,)).fetchone()
    assert row is not None
    return int(row[0])


def test_partitions_ahead_and_rows_moved_out_of_default(
    own: psycopg.Connection, put_times: Callable[[int, list[datetime]], None],
) -> None:
    """Readings of a month without partition wait in DEFAULT, then move into their partition."""
    pk = _device(own, "far", "m1")
    future = datetime(2031, 5, 10, tzinfo=UTC)
    put_times(pk, [future, future + timedelta(hours=1)])
    assert own.execute("SELECT count(*) FROM readings_default").fetchone() == (2,)
    assert ensure_partitions(own, future) == 3 * 5  # Apr..Aug 2031, for three tables
    assert ensure_partitions(own, future) == 0
    assert own.execute("SELECT count(*) FROM readings_default").fetchone() == (0,)
    assert own.execute("SELECT count(*) FROM readings_203105").fetchone() == (2,)
    names = [p[0] for p in partitions(own, "readings")]
    assert {"readings_default", "readings_203104", "readings_203108"} <= set(names)
    rows = query_readings(own, device_pk=pk, metric=E, bucket="1h", tz="UTC")
    assert [r["value"] for r in rows] == [1000.0, 0.0]


def test_retention_per_tenant_and_kind(
    own: psycopg.Connection, put_times: Callable[[int, list[datetime]], None],
) -> None:
    """A tenant keeping raw data 30 days loses it sooner; care data goes sooner; rollups stay."""
    short, long_ = _device(own, "short", "m1"), _device(own, "long", "m1")
    care = _device(own, "long", "bed1", type="care_bed")
    set_retention(own, tenant="short", kind="raw", keep=timedelta(days=30))
    assert retention(own, tenant="short", kind="raw") == timedelta(days=30)
    assert retention(own, tenant="long", kind="raw") == timedelta(days=730)
    old = [NOW - timedelta(days=200, hours=h) for h in range(3)]
    recent = [NOW - timedelta(days=2, hours=h) for h in range(3)]
    for pk in (short, long_, care):
        put_times(pk, sorted(old + recent))
    own.execute("INSERT INTO events (device_pk, ts, event, received_at) VALUES "
                "(%s, %s, 'fall', %s), (%s, %s, 'tamper', %s)",
                (care, old[0], old[0], long_, old[0], old[0]))
    while rollups.refresh_rollups(own):
        pass
    rollups_before = _count(own, "rollup_15m", short)

    done = apply_retention(own, NOW)
    assert done["readings"] == 3 + 3  # short's old raw data and the care device's (180 days)
    assert (_count(own, "readings", short), _count(own, "readings", long_),
            _count(own, "readings", care)) == (3, 6, 3)
    assert done["events"] == 1 and _count(own, "events", long_) == 1
    assert _count(own, "rollup_15m", short) == rollups_before
    assert apply_retention(own, NOW)["readings"] == 0  # idempotent

    # A late reading inside a bucket whose raw data is gone leaves its rollups alone.
    day = query_readings(own, device_pk=short, metric=E, bucket="1d", tz="UTC")
    put_times(short, [old[1] + timedelta(minutes=5)])
    assert query_readings(own, device_pk=short, metric=E, bucket="1d", tz="UTC") == day


def test_whole_partitions_dropped_when_past_retention_for_everyone(
    own: psycopg.Connection, put_times: Callable[[int, list[datetime]], None],
) -> None:
    """When every tenant (and the default) is past a month, its partition is dropped."""
    pk = _device(own, "solo", "m1")
    old = datetime(2025, 2, 10, tzinfo=UTC)  # inside readings_202502, made by the migration
    put_times(pk, [old, NOW - timedelta(days=1)])
    for kind in ("raw", "care_raw"):
        set_retention(own, tenant=None, kind=kind, keep=timedelta(days=365))
    done = apply_retention(own, NOW)
    assert done["readings_partitions_dropped"] >= 1
    names = {p[0] for p in partitions(own, "readings")}
    assert "readings_202502" not in names and "readings_202512" in names
    assert _count(own, "readings", pk) == 1
    set_retention(own, tenant="solo", kind="raw", keep=None)  # one tenant keeps raw data forever
    assert apply_retention(own, NOW)["readings_partitions_dropped"] == 0
