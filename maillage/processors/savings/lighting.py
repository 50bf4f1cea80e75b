"""Lighting savings per lamp and night: reference (dusk to dawn at full power) against measured.

Entry point for the savings job: `compute(conn, *, tenant_id=None, since=None, until=None) -> int`
(lamp-nights stored). It reads the lamps' readings and inventory through
`maillage.db.lighting_savings`, splits each night's saving by cause (`led_retrofit`, `dimming`,
`switch_off`, `presence`) and stores one row per lamp and night; `db.lighting_savings.daily`
reads them back aggregated per lamp, cabinet, street, district or commune.

Method (docs/lighting_savings.md): the night of local date D runs from noon D to noon D+1.
Reference = the system power of the lamp the retrofit replaced (else of the lamp itself) from
astronomical dusk to dawn at the lamp's position. Each interval between two readings carries the
state reported at its end (level, power) and the energy of the counter between them. While dark:
- level below 100 % and lit: (full power - drawn) is `dimming`;
- off: full power is `switch_off` (the mid-night extinction: an off stretch at dusk or dawn
  shorter than `EDGE_S` is the photocell or the clock, not a measure, and goes to `other`);
- on a presence-driven street (lamp meta `presence_adaptive`, or a cabinet with a
  `presence_sensor`) both are credited to `presence`;
`led_retrofit` = (replaced - own system power) x night length; `other` = reference - measured -
the four causes (lamp failures, burning outside the night, gaps).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from astral import Observer
from astral.sun import dawn, dusk

from maillage.db import lighting_savings as db
from maillage.db import savings as savings_db
from maillage.processors.savings import tariffs

log = logging.getLogger(__name__)

CAUSES = db.CAUSES
BALLAST = db.BALLAST
DEFAULT_DEPRESSION_DEG = 3.0
"""Sun below the horizon when lamps switch (a 20 lx photocell); lamp meta `switch_depression_deg`."""
EDGE_S = 20 * 60
MAX_GAP_S = 30 * 60
"""A longer interval between two readings is a gap: its energy counts, no cause is given."""
FULL_LEVEL = 99.5
CHUNK = 100
"""Lamps whose readings are read and whose nights are stored together."""


@dataclass(frozen=True, slots=True)
class LampInfo:
    """What the computation needs to know about one lamp (from the registry)."""

    device_id: str
    pk: int
    lat: float
    lon: float
    tech: str
    system_w: float
    reference_w: float
    replaced_tech: str | None
    adaptive: bool
    depression_deg: float
    cabinet: str | None
    site: str | None
    district: str | None
    commune: str | None


@dataclass(frozen=True, slots=True)
class Interval:
    """(start, end] between two readings, with the state reported at its end."""

    start: datetime
    end: datetime
    energy_wh: float
    power_w: float
    level: float | None


def _number(value: object) -> float | None:
    """A meta value as a float (CSV imports keep meta as text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]  # str, int or float from JSON
    except (TypeError, ValueError):
        return None


def _truthy(value: object) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "oui")


system_power_w = db.system_power_w


def lamp_info(row: Mapping[str, Any]) -> LampInfo | None:
    """A registry row as a `LampInfo`; None when position, technology or power is missing."""
    meta: Mapping[str, Any] = row.get("meta") or {}
    tech = str(meta.get("lamp_tech") or "").upper()
    nominal = _number(meta.get("nominal_power_w"))
    if row.get("lat") is None or row.get("lon") is None or not tech or not nominal:
        return None
    system = _number(meta.get("system_power_w")) or system_power_w(tech, nominal)
    replaced_tech = str(meta.get("replaced_tech") or "").upper() or None
    replaced_w = _number(meta.get("replaced_power_w"))
    reference = system
    if replaced_tech is not None and replaced_w:
        reference = system_power_w(replaced_tech, replaced_w)
    return LampInfo(
        device_id=row["device_id"], pk=row["pk"], lat=row["lat"], lon=row["lon"], tech=tech,
        system_w=system, reference_w=reference, replaced_tech=replaced_tech,
        adaptive=_truthy(meta.get("presence_adaptive")) or bool(row.get("cabinet_presence")),
        depression_deg=_number(meta.get("switch_depression_deg")) or DEFAULT_DEPRESSION_DEG,
        cabinet=meta.get("cabinet"), site=row.get("site"), district=row.get("district"),
        commune=row.get("commune"))


def night_window(night: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """(local noon of `night`, local noon of the next day): the span a lamp-night covers."""
    noon = time(12, tzinfo=tz)
    return datetime.combine(night, noon), datetime.combine(night + timedelta(days=1), noon)


def dusk_dawn(lat: float, lon: float, night: date, depression: float) -> tuple[datetime, datetime] | None:
    """Astronomical dusk of `night` and dawn of the next day at a position (None: no night)."""
    obs = Observer(latitude=lat, longitude=lon)
    try:
        return (dusk(obs, night, depression=depression, tzinfo=UTC),
                dawn(obs, night + timedelta(days=1), depression=depression, tzinfo=UTC))
    except ValueError:  # the sun never goes that far below the horizon (polar summer)
        return None


def intervals(series: Sequence[tuple[datetime, float | None, float | None, float | None]],
              system_w: float) -> list[Interval]:
    """Intervals between consecutive readings; energy from the counter when it is plausible."""
    out: list[Interval] = []
    for (t0, _p0, _l0, e0), (t1, p1, l1, e1) in zip(series, series[1:], strict=False):
        seconds = (t1 - t0).total_seconds()
        power = p1 if p1 is not None else 0.0
        energy = power * seconds / 3600
        if e0 is not None and e1 is not None:
            step = e1 - e0
            # A drop (counter replaced) or a jump beyond twice the lamp's power: trust the power.
            if 0 <= step <= 2 * max(system_w, power) * seconds / 3600 + 1.0:
                energy = step
        out.append(Interval(t0, t1, energy, power, l1))
    return out


def _overlap(iv: Interval, lo: datetime, hi: datetime) -> float:
    return max(0.0, (min(iv.end, hi) - max(iv.start, lo)).total_seconds())


def lamp_night(lamp: LampInfo, ivs: Sequence[Interval], night: tuple[datetime, datetime] | None,
               ) -> dict[str, float]:
    """Reference, measured and the saving by cause (Wh) of one lamp over one night's intervals."""
    measured = sum(iv.energy_wh for iv in ivs)
    causes = dict.fromkeys(CAUSES, 0.0)
    if night is None:
        return {"reference_wh": 0.0, "measured_wh": measured, **causes,
                "other_wh": -measured}
    lo, hi = night
    hours = (hi - lo).total_seconds() / 3600
    reference = lamp.reference_w * hours
    causes["led_retrofit"] = (lamp.reference_w - lamp.system_w) * hours
    dark = [(iv, _overlap(iv, lo, hi)) for iv in ivs]
    dark = [(iv, s) for iv, s in dark if s > 0]
    lit = [iv for iv, _ in dark if iv.power_w > 0]
    first_on = lit[0].start if lit else hi
    last_on = lit[-1].end if lit else lo
    off_at_dusk = (first_on - lo).total_seconds() > EDGE_S
    off_at_dawn = (hi - last_on).total_seconds() > EDGE_S
    for iv, seconds in dark:
        if (iv.end - iv.start).total_seconds() > MAX_GAP_S:
            continue
        if iv.power_w > 0:
            if iv.level is None:
                dimmed = iv.power_w < 0.97 * lamp.system_w
            else:
                dimmed = iv.level < FULL_LEVEL
            if not dimmed:
                continue
            cause = "dimming"
        else:
            if iv.level is not None and iv.level > 0:
                continue  # commanded on, drawing nothing: a failed lamp, not a saving
            if lit and iv.end <= first_on and not off_at_dusk:
                continue
            if lit and iv.start >= last_on and not off_at_dawn:
                continue
            cause = "switch_off"
        if lamp.adaptive:
            cause = "presence"
        drawn = iv.energy_wh * seconds / (iv.end - iv.start).total_seconds()
        causes[cause] += lamp.system_w * seconds / 3600 - drawn
    other = reference - measured - sum(causes.values())
    return {"reference_wh": reference, "measured_wh": measured, **causes, "other_wh": other}


@dataclass(frozen=True, slots=True)
class Prices:
    """A tenant's tariffs and emission factors, to price each night when it is computed."""

    tariff_list: list[tariffs.Tariff]
    factor_list: list[tariffs.Factor]

    def of(self, night: date, span: tuple[datetime, datetime] | None,
           tz: ZoneInfo) -> tuple[float | None, float]:
        """(€/kWh of energy spread over the night's dark hours or None, kg CO2/kWh)."""
        factor = tariffs.factor_on(self.factor_list, night).kg_co2_per_kwh
        tariff = tariffs.in_force(self.tariff_list, night)
        if tariff is None:
            return None, factor
        lo, hi = span if span is not None else night_window(night, tz)
        return tariffs.eur_per_kwh(tariff, lo.astimezone(tz), hi.astimezone(tz)), factor


def prices(conn: psycopg.Connection, *, tenant: str) -> Prices:
    """The tenant's tariffs and factors (`db.savings`)."""
    tariff_rows, factor_rows = savings_db.tenant_prices(conn=conn, tenant=tenant)
    return Prices(
        [tariffs.Tariff(id=r["id"], valid_from=r["valid_from"], base_eur_kwh=r["base_eur_kwh"],
                        peak_eur_kwh=r["peak_eur_kwh"], offpeak_eur_kwh=r["offpeak_eur_kwh"],
                        offpeak_hours=r["offpeak_hours"], source=r["source"]) for r in tariff_rows],
        [tariffs.Factor(id=r["id"], valid_from=r["valid_from"],
                        kg_co2_per_kwh=r["kg_co2_per_kwh"], source=r["source"])
         for r in factor_rows])


def _row(tenant: str, lamp: LampInfo, night: date, span: tuple[datetime, datetime] | None,
         result: Mapping[str, float], readings: int,
         price: tuple[float | None, float]) -> dict[str, Any]:
    return {
        "tenant_id": tenant, "device_id": lamp.device_id, "night": night,
        "cabinet": lamp.cabinet, "site": lamp.site, "district": lamp.district,
        "commune": lamp.commune, "tech": lamp.tech, "replaced_tech": lamp.replaced_tech,
        "dusk": span[0] if span else None, "dawn": span[1] if span else None,
        "reference_wh": result["reference_wh"], "measured_wh": result["measured_wh"],
        "led_retrofit_wh": result["led_retrofit"], "dimming_wh": result["dimming"],
        "switch_off_wh": result["switch_off"], "presence_wh": result["presence"],
        "other_wh": result["other_wh"], "readings": readings,
        "eur_per_kwh": price[0], "kg_co2_per_kwh": price[1],
    }


def compute_lamp(*, tenant: str, tz: ZoneInfo, lamp: LampInfo, series: db.Series, first: date,
                 last: date, priced: Prices) -> list[dict[str, Any]]:
    """Lamp-night rows of one lamp for the nights first..last (nights without readings skipped)."""
    ivs = intervals(series, lamp.system_w)
    rows: list[dict[str, Any]] = []
    night = first
    i = 0
    while night <= last:
        lo, hi = night_window(night, tz)
        while i < len(ivs) and ivs[i].end <= lo:
            i += 1
        j = i
        while j < len(ivs) and ivs[j].end <= hi:
            j += 1
        span = dusk_dawn(lamp.lat, lamp.lon, night, lamp.depression_deg)
        # A night counts once readings cover part of its dark hours (not a noon-time reading).
        if j > i and (span is None or any(_overlap(iv, *span) > 0 for iv in ivs[i:j])):
            rows.append(_row(tenant, lamp, night, span, lamp_night(lamp, ivs[i:j], span), j - i,
                             priced.of(night, span, tz)))
        i = j
        night += timedelta(days=1)
    return rows


def compute(conn: psycopg.Connection, *, tenant_id: str | None = None,
            since: date | None = None, until: date | None = None) -> int:
    """Compute and store lamp-nights; returns the rows stored.

    From `since` (default: the last night stored, recomputed for late data, else the first
    reading) to `until` (default: the last night whose noon-to-noon span has ended).
    """
    stored = 0
    for tenant, tz_name in db.tenants(conn, tenant_id=tenant_id):
        tz = ZoneInfo(tz_name)
        span = db.reading_span(conn, tenant_id=tenant)
        if span is None:
            continue
        first = since or db.last_night(conn, tenant_id=tenant) or (
            span[0].astimezone(tz) - timedelta(hours=12)).date()
        last = until or (span[1].astimezone(tz) - timedelta(hours=12)).date() - timedelta(days=1)
        if last < first:
            continue
        infos = [lamp_info(r) for r in db.lamps(conn, tenant_id=tenant)]
        lamps = [lamp for lamp in infos if lamp is not None]
        priced = prices(conn, tenant=tenant)
        # One reading before the first noon opens the first interval.
        start = night_window(first, tz)[0] - timedelta(seconds=MAX_GAP_S)
        end = night_window(last, tz)[1]
        for k in range(0, len(lamps), CHUNK):
            chunk = lamps[k:k + CHUNK]
            series = db.lamp_series(conn, device_pks=[lamp.pk for lamp in chunk], start=start,
                                    end=end)
            rows = [row for lamp in chunk
                    for row in compute_lamp(tenant=tenant, tz=tz, lamp=lamp,
                                            series=series[lamp.pk], first=first, last=last,
                                            priced=priced)]
            with conn.transaction():
                stored += db.store(conn, rows=rows)
        skipped = len(infos) - len(lamps)
        if skipped:
            log.warning("tenant=%s: %d streetlights without position, lamp_tech or "
                        "nominal_power_w were left out of lighting savings", tenant, skipped)
    return stored
