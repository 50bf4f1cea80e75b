"""Acceptance 1: local daily energy on the 23-hour and 25-hour days of Europe/Paris."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from maillage.db.readings import query_readings

CET, CEST = timezone(timedelta(hours=1)), timezone(timedelta(hours=2))
E = "energy_import_wh"


def _hourly(start: datetime, hours: int, wh_per_hour: float) -> list[tuple[datetime, float]]:
    return [(start + timedelta(hours=h), h * wh_per_hour) for h in range(hours + 1)]


def _days(conn: psycopg.Connection, pk: int, **kw: object) -> dict[str, float]:
    rows = query_readings(conn, device_pk=pk, metric=E, bucket="1d", **kw)  # type: ignore[arg-type]
    return {r["bucket"]: r["value"] for r in rows}


@pytest.mark.parametrize(
    ("first_day", "dst_day", "dst_hours", "offsets"),
    [
        (datetime(2025, 3, 29, tzinfo=CET), "2025-03-30", 23, ("+01:00", "+01:00", "+02:00")),
        (datetime(2025, 10, 25, tzinfo=CEST), "2025-10-26", 25, ("+02:00", "+02:00", "+01:00")),
    ],
)
def test_constant_load_gives_23_and_25_hour_days(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int], refresh: Callable[[], None], first_day: datetime, dst_day: str,
    dst_hours: int, offsets: tuple[str, str, str],
) -> None:
    """1 kWh every hour: the day of the change has 23 or 25 kWh, its neighbours 24."""
    pk = make_device(make_tenant())
    # One index an hour, from local midnight to local midnight three days later.
    put(pk, E, _hourly(first_day, 24 + dst_hours + 24, 1000.0))
    refresh()
    days = _days(conn, pk)
    d0, d1, d2 = (first_day + timedelta(days=i) for i in range(3))
    assert days == {
        f"{d0.date()}T00:00:00{offsets[0]}": 24000.0,
        f"{dst_day}T00:00:00{offsets[1]}": dst_hours * 1000.0,
        f"{d2.date()}T00:00:00{offsets[2]}": 24000.0,
        f"{(d2 + timedelta(days=1)).date()}T00:00:00{offsets[2]}": 0.0,  # the closing reading
    }
    assert d1.date().isoformat() == dst_day
    hours = query_readings(conn, device_pk=pk, metric=E, bucket="1h", start=d1,
                           end=d1 + timedelta(hours=dst_hours))
    local_hours = [r["bucket"] for r in hours if r["bucket"].startswith(dst_day)]
    assert len(local_hours) == dst_hours  # the repeated autumn hour is two buckets
    assert all(r["value"] == pytest.approx(1000.0) for r in hours)


def test_irregular_readings_interpolated_at_local_midnight_spring(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int], refresh: Callable[[], None],
) -> None:
    """Readings off the boundaries, changing rate, across the spring change: computed by hand."""
    pk = make_device(make_tenant())
    put(pk, E, [
        (datetime(2025, 3, 29, 23, 0, tzinfo=CET), 0.0),
        (datetime(2025, 3, 30, 1, 0, tzinfo=CET), 1000.0),  # 500 Wh/h: index 500 at midnight
        (datetime(2025, 3, 30, 4, 0, tzinfo=CEST), 3000.0),  # only 2 real hours after 01:00 CET
        (datetime(2025, 3, 30, 23, 30, tzinfo=CEST), 6900.0),
        (datetime(2025, 3, 31, 0, 30, tzinfo=CEST), 7100.0),  # 200 Wh/h: index 7000 at midnight
    ])
    refresh()
    assert _days(conn, pk) == {
        "2025-03-29T00:00:00+01:00": pytest.approx(500.0),
        "2025-03-30T00:00:00+01:00": pytest.approx(7000.0 - 500.0),
        "2025-03-31T00:00:00+02:00": pytest.approx(100.0),
    }


def test_irregular_readings_interpolated_at_local_midnight_autumn(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int], refresh: Callable[[], None],
) -> None:
    """Across the autumn change: one interval spans the repeated hour, another midnight."""
    pk = make_device(make_tenant())
    put(pk, E, [
        (datetime(2025, 10, 25, 22, 0, tzinfo=CEST), 10_000.0),
        (datetime(2025, 10, 26, 2, 0, tzinfo=CEST), 14_000.0),  # 1000 Wh/h: 12,000 at midnight
        (datetime(2025, 10, 26, 2, 0, tzinfo=CET), 14_600.0),  # one real hour later, same wall time
        (datetime(2025, 10, 26, 22, 0, tzinfo=CET), 18_600.0),  # 200 Wh/h for 20 h
        (datetime(2025, 10, 27, 1, 0, tzinfo=CET), 21_600.0),  # 1000 Wh/h: 20,600 at midnight
    ])
    refresh()
    assert _days(conn, pk) == {
        "2025-10-25T00:00:00+02:00": pytest.approx(2000.0),
        "2025-10-26T00:00:00+02:00": pytest.approx(20_600.0 - 12_000.0),
        "2025-10-27T00:00:00+01:00": pytest.approx(1000.0),
    }


def test_days_in_another_zone_are_computed_from_quarter_hours(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int], refresh: Callable[[], None],
) -> None:
    """Asking for UTC days of a Paris tenant regroups the 15-minute rollups."""
    pk = make_device(make_tenant())
    put(pk, E, _hourly(datetime(2025, 3, 29, tzinfo=CET), 71, 1000.0))  # to 01 Apr 00:00 CEST
    refresh()
    days = _days(conn, pk, tz="UTC")
    assert days == {
        "2025-03-28T00:00:00+00:00": pytest.approx(1000.0),
        "2025-03-29T00:00:00+00:00": pytest.approx(24000.0),
        "2025-03-30T00:00:00+00:00": pytest.approx(24000.0),
        "2025-03-31T00:00:00+00:00": pytest.approx(22000.0),
    }
