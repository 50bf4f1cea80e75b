"""Acceptance 3: a meter reset, a register rollover or a glitch never gives a negative or huge energy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from maillage.db.readings import query_readings

E = "energy_import_wh"
T0 = datetime(2025, 1, 15, 0, 0, tzinfo=UTC)
Q = timedelta(minutes=15)


def _quarters(conn: psycopg.Connection, pk: int) -> list[float]:
    rows = query_readings(conn, device_pk=pk, metric=E, bucket="15m", tz="UTC")
    return [r["value"] for r in rows]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Meter replaced: the index falls to ~0; the energy after the reset is the new index.
        ([5_000_000, 5_000_250, 5_000_500, 10, 260, 510], [250, 250, 10, 250, 250, 0]),
        # A 9-digit register wraps round: 200 Wh before the wrap, 50 after.
        ([999_999_600, 999_999_800, 50, 300], [200, 250, 250, 0]),
        # A glitch up then back: the absurd rise counts nothing, the way back counts as a reset.
        ([1000, 1250, 4e12, 1500, 1750], [250, 0, 1500, 250, 0]),
        # Jitter: an index read one Wh lower counts nothing.
        ([1000, 1250, 1249, 1500], [250, 0, 251, 0]),
        # Zeroed meter starting from 0.
        ([80_000, 0, 100, 200], [0, 100, 100, 0]),
    ],
    ids=["reset", "rollover", "glitch", "jitter", "zeroed"],
)
def test_index_discontinuities(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int], refresh: Callable[[], None], values: list[float],
    expected: list[float],
) -> None:
    """Quarter-hourly readings: each quarter's energy is the one worked out by hand."""
    pk = make_device(make_tenant())
    put(pk, E, [(T0 + i * Q, float(v)) for i, v in enumerate(values)])
    refresh()
    got = _quarters(conn, pk)
    assert got == pytest.approx([float(e) for e in expected])
    assert all(0 <= e <= 250_000 for e in got)  # 1 MW for 15 min: the plausibility bound
    day = query_readings(conn, device_pk=pk, metric=E, bucket="1d")
    assert [r["value"] for r in day] == pytest.approx([float(sum(expected))])


def test_reset_inside_an_interpolated_gap(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int], refresh: Callable[[], None],
) -> None:
    """A reset between two readings an hour apart spreads the new index over that hour."""
    pk = make_device(make_tenant(), meta={"max_power_w": 36_000})
    put(pk, E, [(T0, 7_000_000.0), (T0 + 4 * Q, 400.0), (T0 + 5 * Q, 500.0)])
    refresh()
    assert _quarters(conn, pk) == pytest.approx([100.0, 100.0, 100.0, 100.0, 100.0, 0.0])


def test_max_power_of_a_device_bounds_a_step(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int], refresh: Callable[[], None],
) -> None:
    """With meta.max_power_w = 36 kW, a 20 kWh rise in 15 minutes is a glitch."""
    pk = make_device(make_tenant(), meta={"max_power_w": 36_000})
    put(pk, E, [(T0, 1000.0), (T0 + Q, 21_000.0), (T0 + 2 * Q, 21_100.0)])
    refresh()
    assert _quarters(conn, pk) == pytest.approx([0.0, 100.0, 0.0])
