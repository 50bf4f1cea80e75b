"""The readings API functions: raw pages, fresh buckets right after an insert, areas, CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from maillage.db import rollups
from maillage.db.readings import metric_ids, query_area, query_readings, rows_to_csv

E, P, T = "energy_import_wh", "active_power_w", "temperature_c"
T0 = datetime(2025, 9, 1, 0, 0, tzinfo=UTC)
Q = timedelta(minutes=15)


def test_raw_rows_come_in_pages(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int],
) -> None:
    """Keyset pages over (ts, metric) return every row once, in order, within [start, end)."""
    pk = make_device(make_tenant())
    put(pk, E, [(T0 + i * Q, 10.0 * i) for i in range(10)])
    put(pk, T, [(T0 + i * Q, 20.0 + i) for i in range(0, 10, 2)])
    seen: list[dict[str, object]] = []
    after = None
    while True:
        page = query_readings(conn, device_pk=pk, start=T0 + Q, end=T0 + 9 * Q, limit=4,
                              after=after)
        seen += page
        if len(page) < 4:
            break
        after = (page[-1]["ts"], page[-1]["metric"])
    keys = [(r["ts"], r["metric"]) for r in seen]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert len([k for k in keys if k[1] == E]) == 8
    assert len([k for k in keys if k[1] == T]) == 4
    only = query_readings(conn, device_pk=pk, metric=T, limit=100)
    assert [r["value"] for r in only] == [20.0, 22.0, 24.0, 26.0, 28.0]


def test_buckets_are_right_immediately_after_an_insert(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int],
) -> None:
    """No refresher ran: the query refreshes the device's dirty buckets itself."""
    pk = make_device(make_tenant())
    put(pk, T, [(T0, 10.0), (T0 + Q / 3, 20.0), (T0 + Q, 30.0)])
    rows = query_readings(conn, device_pk=pk, metric=T, bucket="15m", tz="UTC")
    assert rows == [
        {"bucket": "2025-09-01T00:00:00+00:00", "metric": T, "value": 15.0, "min": 10.0, "max": 20.0},
        {"bucket": "2025-09-01T00:15:00+00:00", "metric": T, "value": 30.0, "min": 30.0, "max": 30.0},
    ]
    put(pk, T, [(T0 + Q / 2, 60.0)])  # late, into a computed bucket
    rows = query_readings(conn, device_pk=pk, metric=T, bucket="1h", tz="UTC")
    assert rows == [{"bucket": "2025-09-01T00:00:00+00:00", "metric": T, "value": 30.0,
                     "min": 10.0, "max": 60.0}]
    assert query_readings(conn, device_pk=pk, metric=T, bucket="1mo")[0]["bucket"] == (
        "2025-09-01T00:00:00+02:00")


def test_bucket_range_covers_overlapping_buckets(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int],
) -> None:
    """A range starting mid-day still gives whole days."""
    pk = make_device(make_tenant())
    put(pk, E, [(T0 + i * timedelta(hours=1), 1000.0 * i) for i in range(72)])
    rows = query_readings(conn, device_pk=pk, metric=E, bucket="1d", tz="UTC",
                          start=T0 + timedelta(hours=30), end=T0 + timedelta(hours=31))
    assert rows == [{"bucket": "2025-09-02T00:00:00+00:00", "metric": E, "value": 24000.0,
                     "min": None, "max": None}]
    page = query_readings(conn, device_pk=pk, bucket="1d", tz="UTC", limit=1,
                          after=("2025-09-01T00:00:00+00:00", E))
    assert [r["bucket"] for r in page] == ["2025-09-02T00:00:00+00:00"]


def test_area_sums_energy_and_averages_power(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int],
) -> None:
    """Two meters of a district and one elsewhere; power is the mean and max over readings."""
    tenant = make_tenant()
    a = make_device(tenant, site="school", district="north", commune="ville")
    b = make_device(tenant, site="hall", district="north", commune="ville")
    c = make_device(tenant, site="pool", district="south", commune="ville")
    for pk, rate, watts in ((a, 100.0, 400.0), (b, 300.0, 1200.0), (c, 1000.0, 4000.0)):
        put(pk, E, [(T0 + i * Q, rate * i) for i in range(9)])
        put(pk, P, [(T0 + i * Q, watts) for i in range(8)])
    north = query_area(conn, tenant=tenant, level="district", name="north", metric=None,
                       start=T0, end=T0 + timedelta(hours=2), bucket="1h", tz="UTC")
    assert north == [
        {"bucket": "2025-09-01T00:00:00+00:00", "metric": P, "value": 800.0, "min": 400.0,
         "max": 1200.0, "devices": 2},
        {"bucket": "2025-09-01T00:00:00+00:00", "metric": E, "value": 1600.0, "min": None,
         "max": None, "devices": 2},
        {"bucket": "2025-09-01T01:00:00+00:00", "metric": P, "value": 800.0, "min": 400.0,
         "max": 1200.0, "devices": 2},
        {"bucket": "2025-09-01T01:00:00+00:00", "metric": E, "value": 1600.0, "min": None,
         "max": None, "devices": 2},
    ]
    town = query_area(conn, tenant=tenant, level="commune", name="ville", metric=E, start=None,
                      end=None, bucket="1d")
    assert town == [{"bucket": "2025-09-01T00:00:00+02:00", "metric": E, "value": 11200.0,
                     "min": None, "max": None, "devices": 3}]
    assert rollups.pending(conn)[1] >= 0


def test_rows_to_csv() -> None:
    """Header from the keys, ISO times, empty cells for None."""
    text = rows_to_csv([
        {"ts": datetime(2025, 9, 1, tzinfo=UTC), "metric": E, "value": 1.5},
        {"bucket": "2025-09-01T00:00:00+02:00", "metric": E, "value": None, "min": None},
    ])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["ts", "metric", "value", "bucket", "min"],
                    ["2025-09-01T00:00:00+00:00", E, "1.5", "", ""],
                    ["", E, "", "2025-09-01T00:00:00+02:00", ""]]
    assert rows_to_csv([]) == ""


def test_metric_ids_flags_unknown_names_without_burning_ids(conn: psycopg.Connection) -> None:
    """New names are created once (known=false when outside the vocabulary); repeats are free."""
    ids = metric_ids(conn, [E, "x_custom_counter"])
    again = metric_ids(conn, [E, "x_custom_counter"])
    assert ids == again
    known = dict(conn.execute("SELECT name, known FROM metrics WHERE name = ANY (%s)",
                              ([E, "x_custom_counter"],)).fetchall())
    assert known == {E: True, "x_custom_counter": False}
    seq = conn.execute("SELECT last_value FROM metrics_id_seq").fetchone()
    metric_ids(conn, [E, "x_custom_counter"])
    assert conn.execute("SELECT last_value FROM metrics_id_seq").fetchone() == seq
    with pytest.raises(ValueError):
        metric_ids(conn, ["Bad Name"])


def test_bad_arguments_are_refused(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
) -> None:
    """Unknown zone, bucket, level or device raise clear errors."""
    tenant = make_tenant()
    pk = make_device(tenant)
    with pytest.raises(ValueError, match="zone"):
        query_readings(conn, device_pk=pk, bucket="1d", tz="Mars/Olympus")
    with pytest.raises(ValueError, match="bucket"):
        query_readings(conn, device_pk=pk, bucket="2h")
    with pytest.raises(ValueError, match="level"):
        query_area(conn, tenant=tenant, level="planet", name="x", metric=E, start=None, end=None,
                   bucket="1d")
    with pytest.raises(LookupError):
        query_readings(conn, device_pk=-1)
