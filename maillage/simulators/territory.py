"""A deterministic territory built from a scenario: sites, devices and their registry specs."""

from __future__ import annotations

import math
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from maillage.registry.models import DeviceSpec, DeviceType
from maillage.simulators.scenario import Commune, MeterFormat, Scenario

CARE_ROOMS = ("living", "kitchen", "bathroom")


def slug(name: str) -> str:
    """`Fougères` -> `fougeres`, for device ids."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(c if c.isalnum() else "-" for c in ascii_name.lower()).strip("-")


@dataclass(frozen=True, slots=True)
class MeterSite:
    """A delivery point with its meter: household or social housing, heating, PV, contract."""

    device_id: str
    commune: int
    district: str
    building: str
    dwelling: str
    lat: float
    lon: float
    housing: Literal["house", "flat", "social"]
    area_m2: float
    occupants: int
    electric_heating: bool
    tariff: Literal["base", "hphc"]
    subscribed_va: int
    pv_kwc: float
    fmt: MeterFormat
    adsc: str
    """12-digit meter serial (ADCO/ADSC of the TIC)."""


@dataclass(frozen=True, slots=True)
class Lamp:
    """A streetlight: its lamp technology and nominal power, on a cabinet circuit."""

    device_id: str
    commune: int
    cabinet: str
    street: str
    lat: float
    lon: float
    tech: Literal["LED", "HPS", "MH"]
    nominal_w: float
    installed_at: datetime
    replaced_tech: Literal["HPS", "MH"] | None = None
    """What an LED retrofit replaced (None: the lamp is the original one)."""
    replaced_w: float | None = None


@dataclass(frozen=True, slots=True)
class Cabinet:
    """A lighting cabinet switching a street's circuits, with its optional presence sensor."""

    device_id: str
    commune: int
    district: str
    street: str
    lat: float
    lon: float
    lamps: tuple[str, ...]
    presence: str | None
    clock_offset_s: float
    """The cabinet's astronomical clock is a little early or late (seconds)."""


@dataclass(frozen=True, slots=True)
class LuminositySensor:
    """A light sensor on a pole, reporting the natural illuminance."""

    device_id: str
    commune: int
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class CareHome:
    """A dwelling of an elderly resident (by pseudonym) with its care sensors and hub."""

    home_id: str
    commune: int
    district: str
    dwelling: str
    lat: float
    lon: float
    resident: str
    wake_h: float
    bed_h: float
    outing_prob: float
    naps: bool
    heating_setpoint_c: float
    insulation: float
    """0 (poor) .. 1 (good): how much outdoor heat reaches indoors."""

    @property
    def hub(self) -> str:
        return f"{self.home_id}-hub"

    def motion(self, room: str) -> str:
        return f"{self.home_id}-motion-{room}"

    @property
    def door(self) -> str:
        return f"{self.home_id}-door"

    @property
    def bed(self) -> str:
        return f"{self.home_id}-bed"

    @property
    def button(self) -> str:
        return f"{self.home_id}-button"

    @property
    def env(self) -> str:
        return f"{self.home_id}-env"

    def sensors(self) -> list[tuple[str, DeviceType]]:
        """Every device of the home except the hub."""
        out = [(self.motion(r), DeviceType.CARE_MOTION) for r in CARE_ROOMS]
        out += [(self.door, DeviceType.CARE_DOOR), (self.bed, DeviceType.CARE_BED),
                (self.button, DeviceType.CARE_BUTTON), (self.env, DeviceType.CARE_ENV)]
        return out


@dataclass
class Territory:
    """Everything a scenario describes, built once and deterministically from its seed."""

    scenario: Scenario
    meters: list[MeterSite] = field(default_factory=list)
    lamps: list[Lamp] = field(default_factory=list)
    cabinets: list[Cabinet] = field(default_factory=list)
    luminosity: list[LuminositySensor] = field(default_factory=list)
    care_homes: list[CareHome] = field(default_factory=list)

    @property
    def communes(self) -> list[Commune]:
        return self.scenario.communes

    def specs(self) -> list[DeviceSpec]:
        """Registry specs of every device, in a stable order."""
        iv = self.scenario.intervals
        names = [c.name for c in self.communes]
        out: list[DeviceSpec] = []
        for m in self.meters:
            out.append(DeviceSpec(
                device_id=m.device_id, type=DeviceType.METER, lat=m.lat, lon=m.lon,
                site=m.dwelling, commune=names[m.commune], district=m.district,
                building=m.building, dwelling=m.dwelling, expected_interval_s=math.ceil(iv.meter_s),
                meta={"housing": m.housing, "electric_heating": m.electric_heating,
                      "tariff": m.tariff, "subscribed_power_va": m.subscribed_va,
                      "pv_kwc": m.pv_kwc, "format": m.fmt, "serial": m.adsc,
                      "area_m2": m.area_m2}))
        lamp_by_id = {lamp.device_id: lamp for lamp in self.lamps}
        for cab in self.cabinets:
            out.append(DeviceSpec(
                device_id=cab.device_id, type=DeviceType.LIGHTING_CABINET, lat=cab.lat, lon=cab.lon,
                site=cab.street, commune=names[cab.commune], district=cab.district,
                expected_interval_s=math.ceil(iv.cabinet_s),
                meta={"street": cab.street, "lamps": len(cab.lamps),
                      "presence_sensor": cab.presence}))
            for lamp_id in cab.lamps:
                lamp = lamp_by_id[lamp_id]
                out.append(DeviceSpec(
                    device_id=lamp.device_id, type=DeviceType.STREETLIGHT, lat=lamp.lat,
                    lon=lamp.lon, site=lamp.street, commune=names[lamp.commune],
                    district=cab.district, installed_at=lamp.installed_at,
                    expected_interval_s=math.ceil(iv.streetlight_s),
                    meta=_lamp_meta(lamp, cab)))
            if cab.presence:
                out.append(DeviceSpec(
                    device_id=cab.presence, type=DeviceType.PRESENCE, lat=cab.lat, lon=cab.lon,
                    site=cab.street, commune=names[cab.commune], district=cab.district,
                    expected_interval_s=math.ceil(iv.presence_s),
                    meta={"cabinet": cab.device_id, "street": cab.street}))
        for lum in self.luminosity:
            out.append(DeviceSpec(
                device_id=lum.device_id, type=DeviceType.LUMINOSITY, lat=lum.lat, lon=lum.lon,
                commune=names[lum.commune], expected_interval_s=math.ceil(iv.luminosity_s)))
        for home in self.care_homes:
            common: dict[str, Any] = {"lat": home.lat, "lon": home.lon, "site": home.dwelling,
                                      "commune": names[home.commune], "district": home.district,
                                      "dwelling": home.dwelling}
            out.append(DeviceSpec(device_id=home.hub, type=DeviceType.CARE_HUB, **common,
                                  expected_interval_s=math.ceil(iv.care_heartbeat_s),
                                  meta={"resident": home.resident}))
            for device_id, dtype in home.sensors():
                interval = iv.care_env_s if dtype == DeviceType.CARE_ENV else iv.care_heartbeat_s
                meta: dict[str, object] = {"resident": home.resident, "hub": home.hub}
                if dtype == DeviceType.CARE_MOTION:
                    meta["room"] = device_id.rsplit("-", 1)[1]
                out.append(DeviceSpec(device_id=device_id, type=dtype, **common,
                                      expected_interval_s=math.ceil(interval), meta=meta))
        return out


def _lamp_meta(lamp: Lamp, cab: Cabinet) -> dict[str, object]:
    """A lamp's inventory facts as an asset register holds them (lighting savings read them)."""
    meta: dict[str, object] = {"lamp_tech": lamp.tech, "nominal_power_w": lamp.nominal_w,
                               "cabinet": lamp.cabinet, "street": lamp.street,
                               "presence_adaptive": cab.presence is not None}
    if lamp.replaced_tech is not None:
        meta["replaced_tech"] = lamp.replaced_tech
        meta["replaced_power_w"] = lamp.replaced_w
    return meta


# The sodium lamp an LED lantern of this power usually replaces (no random draw: the layout of
# existing scenarios stays the same).
LED_REPLACES_W = {28.0: 70.0, 36.0: 70.0, 45.0: 100.0, 60.0: 150.0}


def _split(total: int, weights: list[float]) -> list[int]:
    """Largest-remainder split of `total` by weights (deterministic)."""
    s = sum(weights)
    raw = [total * w / s for w in weights]
    counts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _offset(lat: float, lon: float, rng: random.Random, radius_m: float) -> tuple[float, float]:
    """A point within `radius_m` of (lat, lon)."""
    r = radius_m * math.sqrt(rng.random())
    a = rng.uniform(0, 2 * math.pi)
    dlat = r * math.cos(a) / 111_320
    dlon = r * math.sin(a) / (111_320 * math.cos(math.radians(lat)))
    return round(lat + dlat, 6), round(lon + dlon, 6)


def _pick(rng: random.Random, weights: dict[MeterFormat, float]) -> MeterFormat:
    keys = sorted(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _district_centres(scenario: Scenario, rng: random.Random) -> list[list[tuple[float, float]]]:
    return [[_offset(c.lat, c.lon, rng, 1500) for _ in c.districts] for c in scenario.communes]


def build_territory(scenario: Scenario) -> Territory:
    """Lay out the fleet over the communes; same scenario (and seed), same territory."""
    rng = random.Random(f"{scenario.seed}/territory")
    centres = _district_centres(scenario, rng)
    weights = [c.weight for c in scenario.communes]
    territory = Territory(scenario)
    _add_meters(territory, rng, centres, _split(scenario.fleet.meters, weights))
    _add_lighting(territory, rng, centres, _split(scenario.fleet.streetlights, weights))
    _add_care(territory, rng, centres, _split(scenario.fleet.care_homes, weights))
    _finish_meters(territory, random.Random(f"{scenario.seed}/contracts"))
    return territory


def _add_meters(t: Territory, rng: random.Random, centres: list[list[tuple[float, float]]],
                counts: list[int]) -> None:
    social_share = t.scenario.fleet.social_housing_share
    for ci, (commune, count) in enumerate(zip(t.communes, counts, strict=True)):
        cs = slug(commune.name)
        n = 0
        while n < count:
            di = rng.randrange(len(commune.districts))
            district = commune.districts[di]
            lat, lon = _offset(*centres[ci][di], rng, 600)
            roll = rng.random()
            if roll < social_share:
                housing: Literal["house", "flat", "social"] = "social"
            else:
                housing = "house" if rng.random() < 0.55 else "flat"
            # Houses hold one dwelling; blocks of flats hold several meters.
            dwellings = 1 if housing == "house" else min(count - n, rng.randint(4, 16))
            building = f"{cs}-bat-{len(t.meters) + 1:05d}"
            for k in range(dwellings):
                n += 1
                t.meters.append(_meter_site(rng, ci, cs, len(t.meters) + 1, district, building,
                                            k, housing, lat, lon))


def _meter_site(rng: random.Random, ci: int, cs: str, index: int, district: str, building: str,
                k: int, housing: Literal["house", "flat", "social"], lat: float,
                lon: float) -> MeterSite:
    fleet_area = {"house": (80, 160), "flat": (35, 95), "social": (30, 80)}[housing]
    area = round(rng.uniform(*fleet_area))
    occupants = max(1, min(6, round(area / 30 + rng.uniform(-1, 1))))
    return MeterSite(
        device_id=f"mtr-{cs}-{index:05d}", commune=ci, district=district, building=building,
        dwelling=f"{building}-{k + 1:02d}" if housing != "house" else building,
        lat=lat, lon=lon, housing=housing, area_m2=area, occupants=occupants,
        electric_heating=False, tariff="base", subscribed_va=6000, pv_kwc=0.0, fmt="json",
        adsc=f"{rng.randrange(10**11, 10**12):012d}",
    )


def _finish_meters(t: Territory, rng: random.Random) -> None:
    """Contracts, heating, PV and formats, drawn after the layout so each can be tuned alone."""
    fleet = t.scenario.fleet
    out: list[MeterSite] = []
    for m in t.meters:
        electric = rng.random() < fleet.electric_heating_share
        # Social housing is mostly on collective gas heating.
        if m.housing == "social":
            electric = rng.random() < fleet.electric_heating_share / 2
        if electric:
            subscribed = 9000 if m.area_m2 < 70 else 12000
        else:
            subscribed = 6000 if m.housing != "house" else rng.choice((6000, 9000))
        pv = round(rng.choice((3.0, 4.5, 6.0)), 1) if (
            m.housing == "house" and rng.random() < fleet.pv_share * 2.2) else 0.0
        out.append(MeterSite(
            device_id=m.device_id, commune=m.commune, district=m.district, building=m.building,
            dwelling=m.dwelling, lat=m.lat, lon=m.lon, housing=m.housing, area_m2=m.area_m2,
            occupants=m.occupants, electric_heating=electric,
            tariff="hphc" if (electric or rng.random() < 0.3) else "base",
            subscribed_va=subscribed, pv_kwc=pv,
            fmt=_pick(rng, fleet.meter_formats),
            adsc=m.adsc))
    t.meters = out


def _add_lighting(t: Territory, rng: random.Random, centres: list[list[tuple[float, float]]],
                  counts: list[int]) -> None:
    fleet = t.scenario.fleet
    for ci, (commune, count) in enumerate(zip(t.communes, counts, strict=True)):
        cs = slug(commune.name)
        left = count
        street_no = 0
        while left > 0:
            street_no += 1
            size = min(left, max(4, round(rng.gauss(fleet.lamps_per_cabinet, 4))))
            left -= size
            di = rng.randrange(len(commune.districts))
            lat, lon = _offset(*centres[ci][di], rng, 700)
            street = f"{cs}-rue-{street_no:03d}"
            cab_id = f"cab-{cs}-{street_no:03d}"
            # A street is renovated as a whole: LED or the old sodium (HPS) / metal-halide lamps.
            led = rng.random() < fleet.led_share
            heading = rng.uniform(0, math.pi)
            lamp_ids: list[str] = []
            for k in range(size):
                d = 30.0 * (k + 1)  # 30 m between poles
                llat = round(lat + d * math.cos(heading) / 111_320, 6)
                llon = round(lon + d * math.sin(heading) / (111_320 * math.cos(math.radians(lat))), 6)
                if led:
                    tech: Literal["LED", "HPS", "MH"] = "LED"
                    nominal = rng.choice((28.0, 36.0, 45.0, 60.0))
                    year = rng.randint(2016, 2024)
                else:
                    tech = "HPS" if rng.random() < 0.8 else "MH"
                    nominal = rng.choice((70.0, 100.0, 150.0))
                    year = rng.randint(1992, 2012)
                lamp_id = f"sl-{cs}-{len(t.lamps) + 1:05d}"
                lamp_ids.append(lamp_id)
                t.lamps.append(Lamp(device_id=lamp_id, commune=ci, cabinet=cab_id, street=street,
                                    lat=llat, lon=llon, tech=tech, nominal_w=nominal,
                                    installed_at=datetime(year, rng.randint(1, 12), 1, tzinfo=UTC),
                                    replaced_tech="HPS" if led else None,
                                    replaced_w=LED_REPLACES_W[nominal] if led else None))
            presence = f"pres-{cs}-{street_no:03d}" if rng.random() < fleet.presence_share else None
            t.cabinets.append(Cabinet(device_id=cab_id, commune=ci,
                                      district=commune.districts[di], street=street, lat=lat,
                                      lon=lon, lamps=tuple(lamp_ids), presence=presence,
                                      clock_offset_s=round(rng.uniform(-90, 90))))
        if count:
            for k in range(fleet.luminosity_per_commune):
                lat, lon = _offset(commune.lat, commune.lon, rng, 500)
                t.luminosity.append(LuminositySensor(f"lum-{cs}-{k + 1:02d}", ci, lat, lon))


def _add_care(t: Territory, rng: random.Random, centres: list[list[tuple[float, float]]],
              counts: list[int]) -> None:
    index = 0
    for ci, (commune, count) in enumerate(zip(t.communes, counts, strict=True)):
        cs = slug(commune.name)
        for _ in range(count):
            index += 1
            di = rng.randrange(len(commune.districts))
            lat, lon = _offset(*centres[ci][di], rng, 800)
            home_id = f"care-{cs}-{index:04d}"
            t.care_homes.append(CareHome(
                home_id=home_id, commune=ci, district=commune.districts[di],
                dwelling=f"{cs}-log-{index:04d}", lat=lat, lon=lon,
                # A pseudonym only: the platform never needs the resident's name.
                resident=f"R-{rng.getrandbits(32):08x}",
                wake_h=round(rng.uniform(6.5, 8.5), 2), bed_h=round(rng.uniform(21.5, 23.5), 2),
                outing_prob=round(rng.uniform(0.2, 0.7), 2), naps=rng.random() < 0.4,
                heating_setpoint_c=round(rng.uniform(19.5, 22.0), 1),
                insulation=round(rng.uniform(0.2, 0.9), 2)))

