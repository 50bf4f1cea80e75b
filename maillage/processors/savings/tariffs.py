"""Tariffs and emission factors: which one is in force on a day, and what a kWh costs (pure).

A tenant's tariffs and factors are rows with a `valid_from` date: the one in force on a day is
the latest starting on or before it, so adding a tariff from next month leaves past savings as
they were (and results are priced when computed, then stored). A tariff is a base price, or
peak and off-peak prices with off-peak hours in local time ("22:00-06:00", or several ranges
"01:00-07:00,12:30-14:30"). Energy spread over an interval is priced by the share of that
interval falling in off-peak hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TypeVar

FRENCH_MIX_KG_CO2_PER_KWH = 0.052
FRENCH_MIX_SOURCE = ("ADEME Base Empreinte, electricite, mix moyen France continentale, "
                     "consommation (2022): 0.052 kg CO2e/kWh (default; set a tenant factor to change)")


@dataclass(frozen=True)
class Tariff:
    """€/kWh in force from `valid_from`: `base`, or `peak`/`offpeak` with `offpeak_hours`."""

    id: int | None
    valid_from: date
    base_eur_kwh: float | None = None
    peak_eur_kwh: float | None = None
    offpeak_eur_kwh: float | None = None
    offpeak_hours: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.base_eur_kwh is not None:
            if self.peak_eur_kwh is not None or self.offpeak_eur_kwh is not None:
                raise ValueError("a tariff is a base price, or peak and off-peak prices, not both")
        elif self.peak_eur_kwh is None or self.offpeak_eur_kwh is None or not self.offpeak_hours:
            raise ValueError("give a base price, or peak and off-peak prices with off-peak hours")
        for price in (self.base_eur_kwh, self.peak_eur_kwh, self.offpeak_eur_kwh):
            if price is not None and price < 0:
                raise ValueError("a price is 0 or more")
        if self.offpeak_hours:
            parse_hours(self.offpeak_hours)


@dataclass(frozen=True)
class Factor:
    """kg CO2 per kWh in force from `valid_from` (id None: the French mix default)."""

    id: int | None
    valid_from: date
    kg_co2_per_kwh: float
    source: str


DEFAULT_FACTOR = Factor(None, date.min, FRENCH_MIX_KG_CO2_PER_KWH, FRENCH_MIX_SOURCE)

T = TypeVar("T", Tariff, Factor)


def in_force(items: Sequence[T], day: date) -> T | None:
    """The item with the latest `valid_from` on or before `day` (None when none started yet)."""
    best: T | None = None
    for item in items:
        if item.valid_from <= day and (best is None or item.valid_from > best.valid_from):
            best = item
    return best


def factor_on(factors: Sequence[Factor], day: date) -> Factor:
    """The tenant's factor in force on `day`, else the French mix default."""
    return in_force(factors, day) or DEFAULT_FACTOR


def parse_hours(text: str) -> list[tuple[time, time]]:
    """'22:00-06:00,12:00-14:00' -> [(22:00, 06:00), (12:00, 14:00)]; ValueError when malformed."""
    ranges: list[tuple[time, time]] = []
    for part in text.split(","):
        try:
            a, b = (time.fromisoformat(x.strip()) for x in part.split("-"))
        except ValueError as exc:
            raise ValueError(f"off-peak hours {text!r}: use HH:MM-HH:MM[,HH:MM-HH:MM]") from exc
        if a == b:
            raise ValueError(f"off-peak hours {text!r}: an empty range {part.strip()!r}")
        ranges.append((a, b))
    return ranges


def _minutes(t: time) -> float:
    return t.hour * 60 + t.minute + t.second / 60


def offpeak_share(hours: str, start: datetime, end: datetime) -> float:
    """Share of [start, end) (local wall-clock times) falling in the off-peak `hours`."""
    total = (end - start).total_seconds() / 60
    if total <= 0:
        return 0.0
    ranges = [(_minutes(a), _minutes(b)) for a, b in parse_hours(hours)]
    inside = 0.0
    day = datetime.combine(start.date(), time(), start.tzinfo)
    while day < end:
        for a, b in ranges:
            spans = [(a, b)] if a < b else [(0.0, b), (a, 1440.0)]  # over midnight: two pieces
            for lo, hi in spans:
                s = max(start, day + timedelta(minutes=lo))
                e = min(end, day + timedelta(minutes=hi))
                if e > s:
                    inside += (e - s).total_seconds() / 60
        day += timedelta(days=1)
    return min(1.0, inside / total)


def eur_per_kwh(tariff: Tariff, start: datetime, end: datetime) -> float:
    """The mean price of energy spread evenly over [start, end) (local times) under `tariff`."""
    if tariff.base_eur_kwh is not None:
        return tariff.base_eur_kwh
    assert tariff.peak_eur_kwh is not None and tariff.offpeak_eur_kwh is not None
    assert tariff.offpeak_hours is not None
    share = offpeak_share(tariff.offpeak_hours, start, end)
    return share * tariff.offpeak_eur_kwh + (1 - share) * tariff.peak_eur_kwh


def day_price(tariffs: Sequence[Tariff], day: date) -> tuple[float | None, int | None]:
    """(€/kWh, tariff id) for energy spread over a whole local day; (None, None) without tariff."""
    tariff = in_force(tariffs, day)
    if tariff is None:
        return None, None
    start = datetime.combine(day, time())
    return eur_per_kwh(tariff, start, start + timedelta(days=1)), tariff.id
