"""Scenario: the territory, fleet sizes, clock and anomaly settings of one simulation run."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from maillage.errors import MaillageError
from maillage.registry.models import TENANT_RE


class ScenarioError(MaillageError):
    """A scenario file that cannot be read or is not valid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LightingPolicy(_Strict):
    """How a commune runs its public lighting at night."""

    mode: Literal["all_night", "cutoff", "dimming"] = "all_night"
    # Mid-night switch-off ("extinction en coeur de nuit") or dimming window, local time.
    night_from: time = time(23, 0)
    night_to: time = time(5, 30)
    dim_level_pct: float = Field(default=50.0, ge=0, le=100)
    # Lamps switch when the sun is this far below the horizon (3 degrees: about a 20 lx photocell).
    depression_deg: float = Field(default=3.0, ge=0, le=18)
    presence_boost_s: int = Field(default=120, ge=0)


class Commune(_Strict):
    """A commune of the territory, with its real position."""

    name: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    districts: list[str] = Field(default_factory=lambda: ["centre", "nord", "sud"])
    weight: float = Field(default=1.0, gt=0)
    """Share of the fleet living here, relative to the other communes."""
    lighting: LightingPolicy = Field(default_factory=LightingPolicy)


MeterFormat = Literal["tic_historique", "tic_standard", "senml", "json"]


def _default_formats() -> dict[MeterFormat, float]:
    # Home modems read the Linky TIC; other meters send SenML or JSON.
    return {"tic_historique": 0.2, "tic_standard": 0.4, "senml": 0.2, "json": 0.2}


class Fleet(_Strict):
    """How many devices of each kind, and the mix of their characteristics."""

    meters: int = Field(default=0, ge=0)
    streetlights: int = Field(default=0, ge=0)
    care_homes: int = Field(default=0, ge=0)
    social_housing_share: float = Field(default=0.25, ge=0, le=1)
    electric_heating_share: float = Field(default=0.35, ge=0, le=1)
    pv_share: float = Field(default=0.08, ge=0, le=1)
    meter_formats: dict[MeterFormat, float] = Field(default_factory=_default_formats)
    led_share: float = Field(default=0.55, ge=0, le=1)
    lamps_per_cabinet: int = Field(default=24, ge=1)
    presence_share: float = Field(default=0.1, ge=0, le=1)
    """Share of streets (cabinets) equipped with a presence sensor driving the lamps."""
    luminosity_per_commune: int = Field(default=1, ge=0)


class Intervals(_Strict):
    """Reporting periods in simulated seconds."""

    meter_s: float = Field(default=15, gt=0)
    streetlight_s: float = Field(default=60, gt=0)
    cabinet_s: float = Field(default=60, gt=0)
    presence_s: float = Field(default=60, gt=0)
    luminosity_s: float = Field(default=60, gt=0)
    care_env_s: float = Field(default=300, gt=0)
    care_heartbeat_s: float = Field(default=900, gt=0)


class Anomalies(_Strict):
    """Which anomalies to inject, how often, and the faulty-device share."""

    enabled: bool = True
    per_device_day: float = Field(default=0.02, ge=0)
    """Expected number of injected anomalies per device and simulated day."""
    kinds: list[str] | None = None
    """Restrict to these kinds (default: every kind that fits the device type)."""
    first_after_s: float = Field(default=120, ge=0)
    """A first wave of anomalies starts this long after the start (demo: within minutes)."""
    first_wave: int = Field(default=8, ge=0)
    """How many anomalies the first wave holds, spread over the kinds."""


class Scenario(_Strict):
    """One simulation run; the same scenario and seed give byte-identical publications."""

    tenant: str = "sim"
    tenant_name: str | None = None
    timezone: str = "Europe/Paris"
    seed: int = 1
    start: datetime | None = None
    """Simulated start (aware); default: now, or in the past when accelerated."""
    speed: float = Field(default=1.0, gt=0)
    communes: list[Commune] = Field(min_length=1)
    fleet: Fleet = Field(default_factory=Fleet)
    intervals: Intervals = Field(default_factory=Intervals)
    anomalies: Anomalies = Field(default_factory=Anomalies)

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        if not TENANT_RE.match(v):
            raise ValueError("tenant: lower-case letters, digits, '-' and '_'")
        return v

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("start must carry a time zone (e.g. 2026-01-05T00:00:00Z)")
        return v.astimezone(UTC) if v is not None else None

    @model_validator(mode="after")
    def _unique_communes(self) -> Scenario:
        names = [c.name for c in self.communes]
        if len(set(names)) != len(names):
            raise ValueError("commune names must be unique")
        return self


def load_scenario(path: Path) -> Scenario:
    """Read a YAML (.yaml/.yml) or TOML (.toml) scenario file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    try:
        doc = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"scenario {path} is not valid {path.suffix[1:] or 'YAML'}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ScenarioError(f"scenario {path}: expected a mapping at the top level")
    return Scenario.model_validate(doc)


# Three communes of Ille-et-Vilaine: a city, a market town, a smaller town (real positions).
DEMO_COMMUNES = [
    Commune(name="Rennes", lat=48.1173, lon=-1.6778, districts=["centre", "villejean", "sud-gare"],
            weight=2.0, lighting=LightingPolicy(mode="dimming", night_from=time(22, 30),
                                               night_to=time(5, 30), dim_level_pct=50)),
    Commune(name="Vitre", lat=48.1236, lon=-1.2089, districts=["centre", "nord"],
            lighting=LightingPolicy(mode="cutoff", night_from=time(23, 0), night_to=time(5, 0))),
    Commune(name="Fougeres", lat=48.3524, lon=-1.1989, districts=["centre", "bonabry"],
            lighting=LightingPolicy(mode="all_night")),
]


def demo_scenario() -> Scenario:
    """The `--demo` territory: three communes, hundreds of devices of every type, early anomalies."""
    return Scenario(
        tenant="demo",
        tenant_name="Demo territory (Ille-et-Vilaine)",
        seed=2026,
        communes=DEMO_COMMUNES,
        fleet=Fleet(meters=300, streetlights=240, care_homes=30, presence_share=0.4),
        intervals=Intervals(meter_s=10, streetlight_s=30, cabinet_s=30, presence_s=30,
                            luminosity_s=30, care_env_s=60, care_heartbeat_s=300),
        anomalies=Anomalies(per_device_day=0.05, first_after_s=60, first_wave=16),
    )


def build_scenario(*, scenario_file: Path | None, demo: bool, meters: int | None,
                   streetlights: int | None, care_homes: int | None, tenant: str | None,
                   seed: int | None, start: str | None, speed: float | None) -> Scenario:
    """The scenario from a file, the demo, or the flags, with the flags overriding."""
    if scenario_file is not None:
        sc = load_scenario(scenario_file)
    elif demo:
        sc = demo_scenario()
    else:
        sc = Scenario(communes=DEMO_COMMUNES, fleet=Fleet())
    fleet: dict[str, int] = {}
    for key, value in (("meters", meters), ("streetlights", streetlights),
                       ("care_homes", care_homes)):
        if value is not None:
            fleet[key] = value
    update: dict[str, object] = {"fleet": sc.fleet.model_copy(update=fleet)}
    if tenant is not None:
        update["tenant"] = tenant
    if seed is not None:
        update["seed"] = seed
    if speed is not None:
        update["speed"] = speed
    if start is not None:
        update["start"] = parse_start(start)
    return Scenario.model_validate({**sc.model_dump(), **update})


def parse_start(text: str) -> datetime:
    """An ISO 8601 start; a date or a time without zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ScenarioError(f"--start {text!r} is not an ISO 8601 date or time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
