"""The writer: first value wins, duplicates mark nothing, a foreign staging table works too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from maillage.bench.commune import seed_commune
from maillage.db import rollups
from maillage.db.readings import metric_ids, query_area, write_staged

E = "energy_import_wh"
T0 = datetime(2025, 12, 1, tzinfo=UTC)


def _queued(conn: psycopg.Connection, pk: int) -> int:
    return len(rollups.queued(conn, pk))


def test_first_value_received_wins(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    write: Callable[..., int],
) -> None:
    """Within a batch the earliest receive time wins; later batches never overwrite."""
    pk = make_device(make_tenant())
    rx = T0 + timedelta(hours=1)
    batch = [(pk, E, T0, 2.0, rx + timedelta(seconds=5), 2), (pk, E, T0, 1.0, rx, 1),
             (pk, E, T0 + timedelta(minutes=1), 3.0, rx, 3)]
    assert write(conn, batch) == 2
    assert _queued(conn, pk) == 1  # two readings, one bucket, one queue row
    assert write(conn, [(pk, E, T0, 9.0, rx, None)]) == 0
    assert _queued(conn, pk) == 1  # a duplicate changes nothing, so it queues nothing
    values = conn.execute("SELECT value, seq FROM readings WHERE device_pk = %s ORDER BY ts",
                          (pk,)).fetchall()
    assert values == [(1.0, 1), (3.0, 3)]


def test_write_staged_from_a_storage_processor_table(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
) -> None:
    """A processor's own staging table is consumed and its rows queued, in its transaction."""
    pk = make_device(make_tenant())
    mid = metric_ids(conn, [E])[E]
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE my_stage (device_pk bigint, metric_id smallint, "
                     "ts timestamptz, value double precision, received_at timestamptz, "
                     "seq bigint) ON COMMIT DROP")
        conn.execute("INSERT INTO my_stage SELECT %s, %s, %s + i * interval '10 minutes', i, "
                     "now(), NULL FROM generate_series(0, 5) i", (pk, mid, T0))
        assert write_staged(conn, staging_table="my_stage") == 6
        assert conn.execute("SELECT count(*) FROM my_stage").fetchone() == (0,)
    assert _queued(conn, pk) == 4  # 00:00, 00:15, 00:30, 00:45
    assert rollups.refresh_devices(conn, [pk]) == 4  # a query's refresh: computed, left queued
    assert conn.execute("SELECT count(*) FROM rollup_15m WHERE device_pk = %s", (pk,)).fetchone() == (4,)
    assert _queued(conn, pk) == 4
    while rollups.refresh_rollups(conn):
        pass
    assert _queued(conn, pk) == 0


def test_mark_dirty_from_a_staging_table(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
) -> None:
    """For writers that insert themselves: one INSERT … SELECT DISTINCT per batch."""
    pk = make_device(make_tenant())
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE other_stage (device_pk bigint, metric_id smallint, "
                     "ts timestamptz) ON COMMIT DROP")
        conn.execute("INSERT INTO other_stage SELECT %s, 1, %s + i * interval '1 minute' "
                     "FROM generate_series(0, 29) i", (pk, T0))
        assert rollups.mark_dirty(conn, staging_table="other_stage") == 2
    assert _queued(conn, pk) == 2


def test_seed_commune_small(conn: psycopg.Connection, make_tenant: Callable[..., str]) -> None:
    """The benchmark helper on a small commune: one value per day, summed over every meter."""
    tenant = make_tenant()
    pks = seed_commune(conn, tenant=tenant, commune="petite", meters=12, days=40)
    assert len(pks) == 12
    now = datetime.now(UTC)
    days = query_area(conn, tenant=tenant, level="commune", name="petite", metric=E,
                      start=now - timedelta(days=365), end=now, bucket="1d")
    assert len(days) == 40 and all(d["devices"] == 12 for d in days)
    total = conn.execute("SELECT sum(energy) FROM rollup_1d WHERE device_pk = ANY (%s)",
                         (pks,)).fetchone()
    assert total is not None and sum(d["value"] for d in days) == pytest.approx(total[0])
    months = query_area(conn, tenant=tenant, level="district", name="petite-d1", metric=E,
                        start=None, end=None, bucket="1mo")
    assert sum(m["devices"] for m in months) >= 1

