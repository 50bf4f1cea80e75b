"""Tariffs and emission factors (pure): which is in force on a day, off-peak shares, prices."""

from __future__ import annotations

import math
from datetime import date, datetime

import pytest

from maillage.processors.savings import tariffs
from maillage.processors.savings.metered import window_uncertainty_kwh
from maillage.processors.savings.tariffs import Factor, Tariff

BASE = Tariff(1, date(2026, 1, 1), base_eur_kwh=0.20)
HPHC = Tariff(2, date(2026, 7, 1), peak_eur_kwh=0.30, offpeak_eur_kwh=0.12,
              offpeak_hours="22:00-06:00")


@pytest.mark.parametrize(("day", "expected"), [
    (date(2025, 12, 31), None), (date(2026, 1, 1), BASE), (date(2026, 6, 30), BASE),
    (date(2026, 7, 1), HPHC), (date(2030, 1, 1), HPHC),
])
def test_in_force_is_the_latest_started(day: date, expected: Tariff | None) -> None:
    assert tariffs.in_force([HPHC, BASE], day) == expected


def test_a_later_tariff_leaves_earlier_days_priced_as_before() -> None:
    later = Tariff(3, date(2027, 1, 1), base_eur_kwh=0.5)
    for day in (date(2026, 3, 1), date(2026, 9, 1)):
        assert tariffs.day_price([BASE, HPHC], day) == tariffs.day_price([BASE, HPHC, later], day)
    assert tariffs.day_price([BASE, HPHC, later], date(2027, 2, 1)) == (0.5, 3)


@pytest.mark.parametrize(("hours", "start", "end", "share"), [
    ("22:00-06:00", datetime(2026, 3, 1), datetime(2026, 3, 2), 8 / 24),
    ("22:00-06:00", datetime(2026, 3, 1, 23), datetime(2026, 3, 2, 1), 1.0),
    ("22:00-06:00", datetime(2026, 3, 1, 12), datetime(2026, 3, 1, 14), 0.0),
    ("22:00-06:00", datetime(2026, 3, 1, 20), datetime(2026, 3, 2), 0.5),
    ("01:00-07:00,12:30-14:30", datetime(2026, 3, 1), datetime(2026, 3, 3), 8 / 24),
])
def test_offpeak_share(hours: str, start: datetime, end: datetime, share: float) -> None:
    assert tariffs.offpeak_share(hours, start, end) == pytest.approx(share)


def test_day_price_of_peak_offpeak_weights_the_hours() -> None:
    price, tid = tariffs.day_price([BASE, HPHC], date(2026, 8, 1))
    assert tid == 2 and price == pytest.approx(8 / 24 * 0.12 + 16 / 24 * 0.30)


@pytest.mark.parametrize("kwargs", [
    {"base_eur_kwh": 0.2, "peak_eur_kwh": 0.3},
    {"peak_eur_kwh": 0.3, "offpeak_eur_kwh": 0.1},
    {"base_eur_kwh": -0.1},
    {"peak_eur_kwh": 0.3, "offpeak_eur_kwh": 0.1, "offpeak_hours": "22h-6h"},
    {"peak_eur_kwh": 0.3, "offpeak_eur_kwh": 0.1, "offpeak_hours": "06:00-06:00"},
])
def test_malformed_tariffs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Tariff(None, date(2026, 1, 1), **kwargs)  # type: ignore[arg-type]


def test_default_factor_is_the_french_mix_with_its_source() -> None:
    assert tariffs.factor_on([], date(2026, 1, 1)).kg_co2_per_kwh == 0.052
    assert "ADEME" in tariffs.DEFAULT_FACTOR.source
    own = Factor(7, date(2026, 6, 1), 0.03, "supplier")
    assert tariffs.factor_on([own], date(2026, 5, 31)) is tariffs.DEFAULT_FACTOR
    assert tariffs.factor_on([own], date(2026, 6, 1)) is own


def test_window_uncertainty_grows_with_the_square_root_of_the_days() -> None:
    """ASHRAE 14 as opendsm computes it: 4 times the days (same daily mean), about twice the
    uncertainty (the month factor apart)."""
    common = {"n": 365.0, "n_prime": 300.0, "cvrmse_adj": 0.25, "t_stat": 1.65}
    one = window_uncertainty_kwh(predicted_kwh=900.0, days=30, months=1, **common)
    four = window_uncertainty_kwh(predicted_kwh=3600.0, days=120, months=1, **common)
    assert four == pytest.approx(2 * one)
    assert window_uncertainty_kwh(predicted_kwh=0.0, days=0, months=0, **common) == 0.0
    assert math.isfinite(one) and one > 0
