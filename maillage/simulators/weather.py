"""Outdoor weather and sunlight per commune: pure functions of (seed, commune, time)."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from astral import Observer
from astral.sun import dawn, dusk, elevation

# Rennes normals (Meteo-France 1991-2020): annual mean 12.6 C, Jan 6.0 C, Jul 19.3 C.
ANNUAL_MEAN_C = 12.6
SEASONAL_AMPLITUDE_C = 6.7
COLDEST_DAY = 20  # day of year of the coldest normal


def noise(*key: object) -> float:
    """A deterministic uniform number in [-1, 1) for a key (no global random state)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0


def gauss_noise(*key: object) -> float:
    """A deterministic, roughly standard-normal number for a key (sum of uniforms)."""
    return sum(noise(*key, i) for i in range(3))  # variance 3 * 1/3 = 1


@lru_cache(maxsize=65536)
def day_anomaly_c(seed: int, commune: int, day: int) -> float:
    """Departure of a day's mean temperature from normal: smooth over a few days, sd ~3 C."""
    # Weather systems span days: a weighted sum of daily shocks shared by the whole territory,
    # plus a small local part, gives the persistence of real weather.
    shared = sum(w * gauss_noise("wx", seed, day - k) for k, w in enumerate((0.6, 0.5, 0.4, 0.3)))
    local = 0.3 * gauss_noise("wx-local", seed, commune, day)
    return 3.0 * (shared / math.sqrt(0.86) * 0.95 + local)


@lru_cache(maxsize=65536)
def cloudiness(seed: int, day: int) -> float:
    """Cloud cover of a day over the territory, 0 (clear) .. 1 (overcast); Brittany is cloudy."""
    return min(1.0, max(0.0, 0.6 + 0.35 * noise("cloud", seed, day) + 0.1 * noise("cloud2", seed, day - 1)))


def normal_c(day_of_year: float) -> float:
    """Climatological mean temperature for a day of the year."""
    return ANNUAL_MEAN_C - SEASONAL_AMPLITUDE_C * math.cos(2 * math.pi * (day_of_year - COLDEST_DAY) / 365.25)


def outdoor_c(seed: int, commune: int, lon: float, t: datetime) -> float:
    """Outdoor air temperature at time t: season, weather of the day, daily cycle."""
    solar = t + timedelta(hours=lon / 15)  # local solar time
    day = solar.toordinal()
    doy = solar.timetuple().tm_yday
    mean = normal_c(doy) + day_anomaly_c(seed, commune, day)
    clear = 1.0 - cloudiness(seed, day)
    half_range = 2.0 + 2.5 * clear + 1.0 * math.sin(math.pi * (doy - 80) / 365.25)
    hour = solar.hour + solar.minute / 60
    # Coolest around 5 h solar, warmest around 15 h: 10 h of warming, 14 h of cooling.
    if 5 <= hour <= 15:
        diurnal = -math.cos(math.pi * (hour - 5) / 10)
    else:
        diurnal = math.cos(math.pi * ((hour - 15) % 24) / 14)
    return mean + half_range * diurnal


def daily_mean_c(seed: int, commune: int, local_day: date) -> float:
    """The mean outdoor temperature of a day (for heating degree-days)."""
    day = local_day.toordinal()
    return normal_c(local_day.timetuple().tm_yday) + day_anomaly_c(seed, commune, day)


@lru_cache(maxsize=4096)
def _observer(lat: float, lon: float) -> Observer:
    return Observer(latitude=lat, longitude=lon)


@lru_cache(maxsize=262144)
def _elevation_minute(lat: float, lon: float, minute: int) -> float:
    t = datetime.fromtimestamp(minute * 60, tz=UTC)
    return float(elevation(_observer(lat, lon), t))


def sun_elevation(lat: float, lon: float, t: datetime) -> float:
    """Sun elevation in degrees (cached per minute: plenty for light levels)."""
    # ~1 km of rounding changes the elevation by under 0.01 degree and keeps the cache small.
    return _elevation_minute(round(lat, 2), round(lon, 2), int(t.timestamp() // 60))


@lru_cache(maxsize=16384)
def dusk_dawn(lat: float, lon: float, day: date, depression: float) -> tuple[datetime, datetime]:
    """(dusk of `day`, dawn of the next day) in UTC for a sun `depression` degrees below the horizon."""
    obs = _observer(lat, lon)
    evening = dusk(obs, day, depression=depression, tzinfo=UTC)
    morning = dawn(obs, day + timedelta(days=1), depression=depression, tzinfo=UTC)
    return evening, morning


def illuminance_lux(seed: int, lat: float, lon: float, t: datetime) -> float:
    """Horizontal natural illuminance: bright daylight, twilight, dark night, dimmed by clouds."""
    elev = sun_elevation(lat, lon, t)
    cloud = cloudiness(seed, (t + timedelta(hours=lon / 15)).toordinal())
    if elev > 0:
        lux = 128_000 * math.pow(math.sin(math.radians(elev)), 1.15) + 400
    elif elev > -6:
        # Civil twilight: from ~400 lx at sunset down to ~3 lx.
        lux = 400 * math.pow(10.0, elev / 2.5)
    else:
        lux = 0.05
    return lux * (1 - 0.75 * cloud)
