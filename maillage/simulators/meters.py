"""Electricity meter model: household load profiles, electric heating, hot water, PV, voltage."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from maillage.simulators import weather
from maillage.simulators.anomalies import Injection, active
from maillage.simulators.base import MeterReading, Output
from maillage.simulators.territory import MeterSite

OFF_PEAK = (time(22, 30), time(6, 30))  # the usual Enedis "heures creuses" slot
NOMINAL_V = 230.0
FIRST_SPREAD = timedelta(seconds=3)
BURST_SLOT_S = 180


@lru_cache(maxsize=64)
def _french_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("FR", years=year).keys())


def is_holiday(day: date) -> bool:
    """French public holiday (metropolitan)."""
    return day in _french_holidays(day.year)


def off_peak(local: datetime) -> bool:
    """True in the off-peak (HC) slot."""
    t = local.time()
    return t >= OFF_PEAK[0] or t < OFF_PEAK[1]


def _bump(h: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((h - centre) / width) ** 2)


def activity(hour: float, sunday_like: bool, saturday: bool, social: bool) -> float:
    """Household activity shape, ~0.3 at night to ~2 at the evening peak."""
    if sunday_like or saturday:
        shape = (0.3 + 1.1 * _bump(hour, 10.0, 1.5) + 1.2 * _bump(hour, 12.8, 1.0)
                 + 0.7 * _bump(hour, 16.0, 2.0) + 1.6 * _bump(hour, 19.8, 1.4))
    else:
        daytime = 0.55 if social else 0.3  # more people at home during the day
        shape = (0.3 + 1.1 * _bump(hour, 7.5, 0.8) + daytime * _bump(hour, 14.0, 3.5)
                 + 0.6 * _bump(hour, 12.5, 0.7) + 1.7 * _bump(hour, 19.8, 1.3))
    return shape + 0.5 * _bump(hour, 22.3, 0.8)


class MeterModel:
    """One delivery point; `next_reading` integrates the load since the previous reading."""

    def __init__(self, site: MeterSite, *, seed: int, tz: ZoneInfo, interval_s: float,
                 injections: list[Injection] | None = None, rng: random.Random) -> None:
        self.site = site
        self.device_id = site.device_id
        self.seed = seed
        self.tz = tz
        self.interval = timedelta(seconds=interval_s)
        self.injections = injections if injections is not None else []
        # A meter installed years ago: its index starts well above zero.
        start_index = rng.randrange(2_000_000, 60_000_000)
        if site.tariff == "base":
            self.registers = {"base": float(start_index)}
        else:
            self.registers = {"hc": start_index * 0.4, "hp": start_index * 0.6}
        self.export = float(rng.randrange(100_000, 9_000_000)) if site.pv_kwc else None
        self.last: datetime | None = None
        self.last_reading: MeterReading | None = None
        self.phase = rng.uniform(0, 1)
        # Heat loss of the dwelling (W/K): flats share walls, houses lose more.
        per_m2 = {"house": 1.3, "flat": 0.8, "social": 0.9}[site.housing]
        self.loss_w_per_k = site.area_m2 * per_m2 * rng.uniform(0.8, 1.25)
        self.hot_water = site.electric_heating or rng.random() < 0.45
        self.cos_phi = rng.uniform(0.9, 0.97)

    def first_due(self, start: datetime) -> datetime:
        """Spread first readings over a few seconds: data at once, but not all in one burst."""
        return start + min(self.interval, FIRST_SPREAD) * self.phase

    def next_due(self, now: datetime) -> datetime:
        return now + self.interval

    def load_w(self, t: datetime, rng: random.Random) -> float:
        """Household consumption at t (before PV), in W."""
        s = self.site
        local = t.astimezone(self.tz)
        hour = local.hour + local.minute / 60 + local.second / 3600
        day = local.date()
        sunday_like = local.weekday() == 6 or is_holiday(day)
        act = activity(hour, sunday_like, local.weekday() == 5, s.housing == "social")
        standby = 50 + 20 * s.occupants
        appliances = (60 + 50 * s.occupants) * act
        if weather.sun_elevation(s.lat, s.lon, t) < 0 and act > 0.6:
            appliances += 50 + 20 * s.occupants  # lighting after dark
        load = standby + appliances
        if s.electric_heating:
            load += self._heating_w(t, local)
        if self.hot_water and off_peak(local):
            # The water heater runs at the start of the off-peak slot, longer in winter.
            minutes_in = ((local - local.replace(hour=22, minute=30, second=0)).seconds // 60) % 1440
            duration = 60 + 20 * s.occupants + (30 if local.month in (11, 12, 1, 2, 3) else 0)
            if minutes_in < duration:
                load += 2200
        load += self._appliance_burst_w(t, act)
        load *= 1 + rng.gauss(0, 0.05)
        return max(40.0, min(load, 0.92 * s.subscribed_va * self.cos_phi))

    def _appliance_burst_w(self, t: datetime, act: float) -> float:
        """Kettle, oven, washing machine: 3-minute bursts, a pure function of time.

        Drawn per time slot rather than per reading, so the energy does not depend on how often
        the meter reports.
        """
        slot = int(t.timestamp() // BURST_SLOT_S)
        u = (weather.noise("burst", self.seed, self.device_id, slot) + 1) / 2
        if u < 0.05 * act:
            return (1200.0, 2000.0, 2400.0)[int(u * 1e6) % 3]
        return 0.0

    def _heating_w(self, t: datetime, local: datetime) -> float:
        s = self.site
        setpoint = 19.0 if 6 <= local.hour < 23 else 17.0
        # Walls smooth the outdoor cycle: mix the current and the daily mean temperature.
        outdoor = (0.5 * weather.outdoor_c(self.seed, s.commune, s.lon, t)
                   + 0.5 * weather.daily_mean_c(self.seed, s.commune, local.date()))
        internal_gains_k = 2.5
        return max(0.0, self.loss_w_per_k * (setpoint - internal_gains_k - outdoor))

    def pv_w(self, t: datetime) -> float:
        """PV production at t, in W."""
        if not self.site.pv_kwc:
            return 0.0
        elev = weather.sun_elevation(self.site.lat, self.site.lon, t)
        if elev <= 0:
            return 0.0
        cloud = weather.cloudiness(self.seed, (t + timedelta(hours=self.site.lon / 15)).toordinal())
        return self.site.pv_kwc * 1000 * 0.82 * math.sin(math.radians(elev)) * (1 - 0.7 * cloud)

    def next_reading(self, now: datetime, rng: random.Random) -> list[Output]:
        """The meter's reading at `now`, with its registers advanced since the previous one."""
        s = self.site
        inj = self.injections
        load = self.load_w(now, rng)
        if inj:
            load = self._anomalous_load(load, now)
        pv = self.pv_w(now) if load > 0 else 0.0
        net = load - pv
        imported, exported = max(0.0, net), max(0.0, -net)
        local = now.astimezone(self.tz)
        period = "TH.." if s.tariff == "base" else ("HC.." if off_peak(local) else "HP..")
        if self.last is not None:
            hours = (now - self.last).total_seconds() / 3600
            key = "base" if s.tariff == "base" else period[:2].lower()
            self.registers[key] += imported * hours
            if self.export is not None:
                self.export += exported * hours
        self.last = now
        voltage = self._voltage(now, local, exported, rng)
        apparent = imported / self.cos_phi
        reading = MeterReading(
            ts=now, registers_wh={k: int(v) for k, v in self.registers.items()},
            export_wh=int(self.export) if self.export is not None else None, period=period,
            power_w=round(imported, 1), apparent_va=round(apparent, 1),
            export_va=round(exported, 1) if self.export is not None else None,
            voltage_v=voltage, current_a=round(apparent / voltage, 2), subscribed_va=s.subscribed_va)
        if inj and active(inj, "meter_stuck", now) and self.last_reading is not None:
            # The registers keep counting inside; the meter keeps sending its last reading.
            return [replace(self.last_reading, ts=now)]
        self.last_reading = reading
        return [reading]

    def _anomalous_load(self, load: float, now: datetime) -> float:
        """The load while a consumption anomaly runs."""
        s, inj = self.site, self.injections
        if (a := active(inj, "night_overconsumption", now)) is not None:
            load += a.params.get("extra_w", 2000.0)
        if (a := active(inj, "spike", now)) is not None:
            load = a.params.get("power_w", 4.0 * s.subscribed_va)
        if (a := active(inj, "over_subscribed_power", now)) is not None:
            load = s.subscribed_va * a.params.get("ratio", 1.25) * self.cos_phi
        if active(inj, "zero_consumption", now) is not None:
            load = 0.0
        return load

    def _voltage(self, now: datetime, local: datetime, exported: float,
                 rng: random.Random) -> float:
        hour = local.hour + local.minute / 60
        # The feeder sags at the evening peak and rises where PV injects.
        v = NOMINAL_V + 2.0 - 3.5 * _bump(hour, 19.5, 1.5) + exported / 1000 * 1.2
        v += rng.gauss(0, 0.8)
        if self.injections and (a := active(self.injections, "voltage_out_of_range", now)):
            v = a.params.get("voltage_v", 258.0) + rng.gauss(0, 0.5)
        return round(v, 1)
