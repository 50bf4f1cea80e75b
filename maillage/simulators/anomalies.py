"""Injected anomalies: the plan (which device, what, when) and its ground-truth labels file.

The plan is drawn day by day from the seed, so an endless run keeps injecting and a run of any
length injects the same anomalies over the days it covers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import orjson

from maillage.simulators.payloads import iso

# Kind -> (device role it applies to, duration range in minutes, local start-hour window or None).
KINDS: dict[str, tuple[str, tuple[float, float], tuple[float, float] | None]] = {
    # Meters
    "spike": ("meter", (2, 10), None),
    "night_overconsumption": ("meter", (180, 240), (0.5, 1.5)),
    "zero_consumption": ("meter", (360, 2880), None),
    "voltage_out_of_range": ("meter_with_voltage", (20, 180), None),
    "over_subscribed_power": ("meter", (10, 40), (17.5, 20.5)),
    "meter_stuck": ("meter", (120, 720), None),
    # Public lighting
    "lamp_failure": ("lamp", (1440, 7200), None),
    "day_burner": ("lamp", (1440, 4320), (7.0, 11.0)),
    "dimming_not_applied": ("dimmed_lamp", (1440, 4320), (12.0, 18.0)),
    "cabinet_overconsumption": ("cabinet", (1440, 4320), (12.0, 16.0)),
    # Home care (events of the dwelling, labelled on the device that shows them)
    "fall": ("care_button", (20, 90), (8.0, 20.0)),
    "panic_button": ("care_button", (1, 1), (7.0, 22.0)),
    "long_inactivity": ("care_hub", (240, 360), (10.0, 13.0)),
    "night_wandering": ("care_hub", (30, 90), (1.5, 3.5)),
    "indoor_heat": ("care_env", (1440, 4320), (9.0, 12.0)),
    "indoor_cold": ("care_env", (1440, 2880), (16.0, 20.0)),
    "sensor_offline": ("care_sensor", (120, 1440), None),
    "battery_low": ("care_battery", (1440, 4320), None),
    # Faulty devices: what reaches the platform is wrong, not what happens on the ground
    "malformed_payload": ("any_timed", (10, 60), None),
    "duplicate": ("any_timed", (60, 360), None),
    "out_of_order": ("any_timed", (30, 120), None),
    "late_reading": ("any_timed", (60, 360), None),
    "clock_skew": ("any_timed", (120, 1440), None),
}

HOME_KINDS = frozenset({"fall", "panic_button", "long_inactivity", "night_wandering",
                        "indoor_heat", "indoor_cold"})
FAULT_KINDS = frozenset({"malformed_payload", "duplicate", "out_of_order", "late_reading",
                         "clock_skew"})
# First-wave kinds that show within minutes (the demo); lighting ones depend on daylight.
QUICK_KINDS = ("spike", "voltage_out_of_range", "zero_consumption", "meter_stuck", "panic_button",
               "fall", "sensor_offline", "battery_low", "indoor_cold", "malformed_payload",
               "duplicate", "clock_skew", "late_reading", "out_of_order")
QUICK_DARK = ("lamp_failure", "cabinet_overconsumption")
QUICK_LIGHT = ("day_burner",)
QUICK_MINUTES = (3, 15)


@dataclass(frozen=True, slots=True)
class Injection:
    """One anomaly injected on one device over [start, end)."""

    device_id: str
    kind: str
    start: datetime
    end: datetime
    params: dict[str, float] = field(default_factory=dict)

    def active(self, t: datetime) -> bool:
        return self.start <= t < self.end

    def label(self, tenant: str) -> dict[str, object]:
        """The labels-file record of this anomaly."""
        return {"tenant": tenant, "device_id": self.device_id, "kind": self.kind,
                "start": iso(self.start), "end": iso(self.end), "params": self.params}


def active(injections: list[Injection], kind: str, t: datetime) -> Injection | None:
    """The injection of `kind` active at t, if any."""
    for inj in injections:
        if inj.kind == kind and inj.start <= t < inj.end:
            return inj
    return None


def _params(kind: str, rng: random.Random) -> dict[str, float]:
    """Magnitudes of an anomaly, drawn once so the label can carry them."""
    match kind:
        case "spike":
            return {"power_w": float(rng.choice((9000, 11000, 14000)))}
        case "night_overconsumption":
            return {"extra_w": float(rng.randrange(1500, 3000, 100))}
        case "voltage_out_of_range":
            return {"voltage_v": rng.choice((198.0, 201.0, 256.0, 259.0))}
        case "over_subscribed_power":
            return {"ratio": round(rng.uniform(1.15, 1.4), 2)}
        case "cabinet_overconsumption":
            return {"ratio": round(rng.uniform(1.35, 1.8), 2)}
        case "indoor_heat":
            return {"target_c": round(rng.uniform(29.5, 33.0), 1)}
        case "indoor_cold":
            return {"target_c": round(rng.uniform(12.5, 15.0), 1)}
        case "clock_skew":
            return {"skew_s": float(rng.choice((-1, 1)) * rng.randrange(300, 3600, 60))}
        case _:
            return {}


class Planner:
    """Draws the anomalies of each simulated day from the seed, avoiding overlaps per device."""

    def __init__(self, *, seed: int, start: datetime, tz: ZoneInfo, per_device_day: float,
                 candidates: dict[str, list[str]], kinds: list[str] | None = None,
                 first_after_s: float = 0, first_wave: int = 0,
                 is_dark: Callable[[datetime], bool] | None = None) -> None:
        self.seed, self.start, self.tz = seed, start, tz
        self.is_dark = is_dark
        self.per_device_day = per_device_day
        # Only kinds with at least one device to carry them.
        allowed = set(kinds) if kinds is not None else set(KINDS)
        self.candidates = {k: sorted(candidates.get(KINDS[k][0], [])) for k in sorted(allowed)
                           if k in KINDS and candidates.get(KINDS[k][0])}
        self.first_after = timedelta(seconds=first_after_s)
        self.first_wave = first_wave
        self.busy: dict[str, list[tuple[datetime, datetime]]] = {}
        self.n_devices = len({d for ds in self.candidates.values() for d in ds})

    def _free(self, device: str, start: datetime, end: datetime) -> bool:
        return all(end <= s or start >= e for s, e in self.busy.get(device, []))

    def _take(self, inj: Injection, out: list[Injection]) -> None:
        if self._free(inj.device_id, inj.start, inj.end):
            self.busy.setdefault(inj.device_id, []).append((inj.start, inj.end))
            out.append(inj)

    def day(self, k: int) -> list[Injection]:
        """The anomalies starting on simulated day k (day 0 begins at the start)."""
        rng = random.Random(f"{self.seed}/anomalies/{k}")
        out: list[Injection] = []
        if not self.candidates:
            return out
        day_start = self.start + timedelta(days=k)
        if k == 0 and self.first_wave:
            self._first_wave(rng, out)
        kinds = sorted(self.candidates)
        expected = self.per_device_day * self.n_devices
        for _ in range(_poisson(rng, expected)):
            kind = rng.choice(kinds)
            device = rng.choice(self.candidates[kind])
            _, (lo, hi), hours = KINDS[kind]
            start = self._start_in_day(rng, day_start, hours)
            end = start + timedelta(minutes=round(rng.uniform(lo, hi)))
            self._take(Injection(device, kind, start, end, _params(kind, rng)), out)
        return sorted(out, key=lambda i: (i.start, i.device_id, i.kind))

    def _start_in_day(self, rng: random.Random, day_start: datetime,
                      hours: tuple[float, float] | None) -> datetime:
        offset = timedelta(seconds=rng.randrange(0, 86400))
        t = (day_start + offset).replace(microsecond=0)
        if hours is None:
            return t
        # Move to the local hour window on the same local day, then into the simulated day.
        local = t.astimezone(self.tz)
        h = rng.uniform(*hours)
        midnight = local.replace(hour=0, minute=0, second=0)
        cand = (midnight + timedelta(hours=h)).astimezone(self.start.tzinfo).replace(microsecond=0)
        while cand < day_start:
            cand += timedelta(days=1)
        while cand >= day_start + timedelta(days=1):
            cand -= timedelta(days=1)
        return cand

    def _first_wave(self, rng: random.Random, out: list[Injection]) -> None:
        """A few short anomalies of varied kinds right after the start (so a demo shows them)."""
        at = self.start + self.first_after
        lighting = QUICK_DARK if self.is_dark is not None and self.is_dark(at) else QUICK_LIGHT
        # Interleave lighting kinds so a short wave still holds one of them.
        kinds = [k for k in (*lighting, *QUICK_KINDS) if k in self.candidates]
        for i in range(min(self.first_wave, 4 * len(kinds))):
            kind = kinds[i % len(kinds)]
            device = rng.choice(self.candidates[kind])
            start = at + timedelta(seconds=20 * i)
            lo, hi = QUICK_MINUTES if kind != "panic_button" else (1, 1)
            end = start + timedelta(minutes=round(rng.uniform(lo, hi)))
            self._take(Injection(device, kind, start, end, _params(kind, rng)), out)


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (normal approximation for large means)."""
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, u = 0, math.exp(-lam), rng.random()
    cum = p
    while u > cum:
        k += 1
        p *= lam / k
        cum += p
    return k


class LabelWriter:
    """Appends one JSON line per anomaly when it begins in the simulated stream."""

    def __init__(self, path: Path | None, tenant: str,
                 on_label: Callable[[Injection], None] | None = None, *,
                 append: bool = False) -> None:
        self._f: IO[bytes] | None = path.open("ab" if append else "wb") if path else None
        self.tenant = tenant
        self.on_label = on_label
        self.count = 0

    def write(self, inj: Injection) -> None:
        self.count += 1
        if self._f is not None:
            self._f.write(orjson.dumps(inj.label(self.tenant)) + b"\n")
            self._f.flush()
        if self.on_label is not None:
            self.on_label(inj)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
