"""Public lighting: dusk/dawn switching, night cut-off or dimming, presence boost, cabinets."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from maillage.simulators import weather
from maillage.simulators.anomalies import Injection, active
from maillage.simulators.base import Output, Sample
from maillage.simulators.scenario import LightingPolicy
from maillage.simulators.territory import Cabinet, Lamp, LuminositySensor

FIRST_SPREAD_S = 3.0
# Ballast losses of discharge lamps; LED drivers are counted in their nominal power.
BALLAST = {"LED": 1.0, "HPS": 1.12, "MH": 1.1}
TRUTH_CAUSES = ("dimming", "switch_off", "presence")
"""Causes of a lower level the simulator knows it applied (see `LampModel.truth`)."""
TRUTH_NIGHTS = 62
"""Nights of ground truth a lamp keeps (a long accelerated run does not grow without bound)."""


def _first(start: datetime, interval: timedelta, key: str) -> datetime:
    spread = min(interval.total_seconds(), FIRST_SPREAD_S)
    return start + timedelta(seconds=spread * (weather.noise("first", key) + 1) / 2)


class Schedule:
    """A cabinet's switching plan: astronomical clock, then the commune's night policy."""

    def __init__(self, lat: float, lon: float, policy: LightingPolicy, tz: ZoneInfo,
                 clock_offset_s: float) -> None:
        self.lat, self.lon, self.policy, self.tz = lat, lon, policy, tz
        self.offset = timedelta(seconds=clock_offset_s)

    def night(self, day: date) -> tuple[datetime, datetime] | None:
        """(switch-on, switch-off) of the night starting on local `day`; None if it never gets dark."""
        try:
            dusk, dawn = weather.dusk_dawn(self.lat, self.lon, day, self.policy.depression_deg)
        except ValueError:  # polar day: the sun never goes that far below the horizon
            return None
        return dusk + self.offset, dawn + self.offset

    def is_dark(self, t: datetime) -> bool:
        """True between the switch-on at dusk and the switch-off at dawn."""
        d = t.astimezone(self.tz).date()
        for day in (d - timedelta(days=1), d):
            night = self.night(day)
            if night is not None and night[0] <= t < night[1]:
                return True
        return False

    def in_night_window(self, t: datetime) -> bool:
        """Inside the commune's cut-off or dimming hours (local time, may span midnight)."""
        p = self.policy
        if p.mode == "all_night":
            return False
        now = t.astimezone(self.tz).time()
        if p.night_from <= p.night_to:
            return p.night_from <= now < p.night_to
        return now >= p.night_from or now < p.night_to

    def level(self, t: datetime, presence: bool = False) -> float:
        """Commanded level in % (0 = off)."""
        if not self.is_dark(t):
            return 0.0
        if self.in_night_window(t) and not presence:
            return 0.0 if self.policy.mode == "cutoff" else self.policy.dim_level_pct
        return 100.0


@lru_cache(maxsize=200_000)
def passes_in_minute(seed: int, street: str, minute: int, hour: int, city: bool) -> tuple[int, ...]:
    """Seconds (within the minute) at which someone walks or drives past the sensor."""
    per_min = {0: 0.06, 1: 0.03, 2: 0.02, 3: 0.02, 4: 0.03, 5: 0.1, 6: 0.4, 7: 0.9, 8: 1.0,
               17: 1.2, 18: 1.3, 19: 1.1, 20: 0.8, 21: 0.5, 22: 0.3, 23: 0.15}.get(hour, 0.7)
    rate = per_min * (1.0 if city else 0.3)
    # Poisson draw by inversion on a deterministic uniform.
    u = (weather.noise("pass", seed, street, minute) + 1) / 2
    k, p = 0, math.exp(-rate)
    cum = p
    while u > cum and k < 30:
        k += 1
        p *= rate / k
        cum += p
    return tuple(sorted(int((weather.noise("pass-s", seed, street, minute, i) + 1) * 30)
                        for i in range(k)))


class Street:
    """Traffic on a street with a presence sensor: who passed, and when."""

    def __init__(self, seed: int, street: str, city: bool, boost_s: float, tz: ZoneInfo) -> None:
        self.seed, self.street, self.city, self.boost_s, self.tz = seed, street, city, boost_s, tz

    def passes(self, start: datetime, end: datetime) -> int:
        """Passages in (start, end]."""
        t0, t1 = start.timestamp(), end.timestamp()
        n = 0
        for minute in range(int(t0 // 60), int(t1 // 60) + 1):
            hour = datetime.fromtimestamp(minute * 60, self.tz).hour
            for s in passes_in_minute(self.seed, self.street, minute, hour, self.city):
                if t0 < minute * 60 + s <= t1:
                    n += 1
        return n

    def boosted(self, t: datetime) -> bool:
        """True while someone passed within the last `boost_s` seconds."""
        return self.boost_s > 0 and self.passes(t - timedelta(seconds=self.boost_s), t) > 0


@dataclass(frozen=True, slots=True)
class Override:
    """A remote command in force: `level` (None = schedule) until `until` (None = until changed)."""

    mode: str  # "dim" | "on" | "off" | "schedule"
    level: float
    until: datetime | None
    steps: tuple[tuple[time, float], ...] = ()
    """A schedule's (local time, level) steps, by time: each holds until the next (wrapping)."""

    def active(self, t: datetime) -> bool:
        return self.until is None or t < self.until

    def level_at(self, local: time) -> float:
        """A schedule's level at a local time of day."""
        current = self.steps[-1][1]
        for at, level in self.steps:
            if at <= local:
                current = level
        return current


class CommandError(ValueError):
    """A command a lamp controller cannot carry out."""


def parse_command(doc: object, now: datetime) -> Override | None:
    """`{"cmd": "dim", "level": 40, "duration_s"?: 3600}`, `on`, `off`, or `auto` (None)."""
    if not isinstance(doc, dict):
        raise CommandError("a command is a JSON object")
    cmd = doc.get("cmd")
    duration = doc.get("duration_s")
    if duration is not None and (not isinstance(duration, int | float) or duration <= 0):
        raise CommandError("duration_s must be a positive number")
    until = now + timedelta(seconds=duration) if duration else None
    if cmd == "auto":
        return None
    if cmd == "dim":
        level = doc.get("level")
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 <= level <= 100:
            raise CommandError("dim needs a level between 0 and 100")
        return Override("dim", float(level), until)
    if cmd in ("on", "off"):
        return Override(cmd, 100.0 if cmd == "on" else 0.0, until)
    if cmd == "schedule":
        steps = _steps(doc.get("steps"))
        return Override("schedule", steps[0][1], until, steps)
    raise CommandError(f"unknown command {str(cmd)[:30]!r}")


def _steps(raw: object) -> tuple[tuple[time, float], ...]:
    """`[{"at": "22:00", "level": 50}, …]` as sorted (time, level) steps."""
    if not isinstance(raw, list) or not raw:
        raise CommandError("schedule needs steps: [{at: HH:MM, level: 0-100}, ...]")
    steps = []
    for step in raw:
        try:
            at, level = time.fromisoformat(step["at"]), step["level"]
        except (TypeError, KeyError, ValueError) as exc:
            raise CommandError(f"bad schedule step {str(step)[:40]}") from exc
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 <= level <= 100:
            raise CommandError("a schedule step's level is between 0 and 100")
        steps.append((at, float(level)))
    return tuple(sorted(steps))


class LampModel:
    """A streetlight controller node reporting its state, power and counters."""

    def __init__(self, lamp: Lamp, schedule: Schedule, *, street: Street | None, interval_s: float,
                 injections: list[Injection] | None, rng: random.Random) -> None:
        self.lamp = lamp
        self.device_id = lamp.device_id
        self.schedule = schedule
        self.street = street
        self.interval = timedelta(seconds=interval_s)
        self.injections = injections if injections is not None else []
        # Burning hours of the lamp in place: LEDs last the node's life (~4,100 h a year);
        # discharge lamps are replaced every 16,000 h or so, which resets the counter.
        if lamp.tech == "LED":
            self.hours = 4100 * max(0.0, 2026 - lamp.installed_at.year) * rng.uniform(0.9, 1.05)
        else:
            self.hours = rng.uniform(500, 16000)
        self.energy_wh = self.hours * lamp.nominal_w * BALLAST[lamp.tech] * rng.uniform(0.8, 0.95)
        self.last: datetime | None = None
        self.override: Override | None = None
        self._truth: dict[date, dict[str, float]] = {}
        self._night: tuple[date, datetime, datetime, tuple[datetime, datetime] | None] | None = None

    def command(self, override: Override | None, now: datetime) -> tuple[bool, str | None]:
        """Apply a remote order; (done, reason when failed)."""
        if active(self.injections, "lamp_failure", now):
            return False, "lamp failure"
        # A node with the dimming fault acknowledges, then keeps its old level.
        if override is None or override.mode != "dim" or not active(
                self.injections, "dimming_not_applied", now):
            self.override = override
        return True, None

    def first_due(self, start: datetime) -> datetime:
        return _first(start, self.interval, self.device_id)

    def next_due(self, now: datetime) -> datetime:
        return now + self.interval

    def state(self, t: datetime) -> tuple[float, float, str]:
        """(level %, power W, status) at t, anomalies included."""
        inj = self.injections
        presence = self.street is not None and self.schedule.is_dark(t) and self.street.boosted(t)
        level = self.schedule.level(t, presence)
        status = "ok"
        if self.override is not None and self.override.active(t):
            if self.override.mode == "dim":
                level = self.override.level if level > 0 else 0.0
            elif self.override.mode == "schedule":  # while lit, like a dimming order
                local = t.astimezone(self.schedule.tz).time()
                level = self.override.level_at(local) if level > 0 else 0.0
            else:  # "on" (a maintenance test, even in daylight) or "off"
                level = self.override.level
        if active(inj, "dimming_not_applied", t) and 0 < level < 100:
            level = 100.0  # the node missed the dimming order and says nothing about it
        if active(inj, "day_burner", t) and not self.schedule.is_dark(t):
            level = 100.0
        if active(inj, "lamp_failure", t):
            return (level, 0.0, "lampFailure") if level > 0 else (0.0, 0.0, "ok")
        return level, self.power_w(level), status

    def _account(self, now: datetime, hours: float, level: float, power: float, status: str) -> None:
        """Ground truth of the step ending at `now`: energy drawn, and why the level was lower."""
        if self._night is None or not self._night[1] <= now < self._night[2]:
            self._open_night(now)
        assert self._night is not None
        rec = self._truth[self._night[0]]
        rec["measured_wh"] += power * hours
        span = self._night[3]
        if status != "ok" or level >= 100 or span is None or not span[0] <= now < span[1]:
            return
        # The simulator knows why: a presence-driven street, else the commune's cut-off or dimming
        # window, else a remote order.
        if self.street is not None:
            cause = "presence"
        else:
            cause = "switch_off" if level <= 0 else "dimming"
        rec[cause] += (self.power_w(100) - power) * hours

    def _open_night(self, now: datetime) -> None:
        """The night (local noon to noon) holding `now`, its switch-on and -off; old ones dropped."""
        tz = self.schedule.tz
        night = (now.astimezone(tz) - timedelta(hours=12)).date()
        # UTC bounds: comparing times of one zone is cheap, of two zones is not.
        noon = datetime.combine(night, time(12), tz).astimezone(UTC)
        end = datetime.combine(night + timedelta(days=1), time(12), tz).astimezone(UTC)
        self._night = (night, noon, end, self.schedule.night(night))
        if night not in self._truth:
            self._truth[night] = {"measured_wh": 0.0} | dict.fromkeys(TRUTH_CAUSES, 0.0)
            for old in sorted(self._truth)[:-TRUTH_NIGHTS]:
                del self._truth[old]

    def truth(self) -> dict[date, dict[str, float]]:
        """What the lamp really did per night it simulated (local noon to noon), in Wh.

        `reference_wh` (the replaced lamp, or this one, at full power from its switch-on to its
        switch-off), `measured_wh`, and the saving by cause: `led_retrofit`, `dimming`,
        `switch_off`, `presence`. Tests compare the savings computation with this; the computation
        itself never reads it.
        """
        lamp = self.lamp
        full = self.power_w(100)
        ref_w = (lamp.replaced_w * BALLAST[lamp.replaced_tech]
                 if lamp.replaced_tech is not None and lamp.replaced_w is not None else full)
        out: dict[date, dict[str, float]] = {}
        for night, rec in self._truth.items():
            span = self.schedule.night(night)
            hours = (span[1] - span[0]).total_seconds() / 3600 if span is not None else 0.0
            out[night] = dict(rec) | {"reference_wh": ref_w * hours,
                                      "led_retrofit": (ref_w - full) * hours}
        return out

    def power_w(self, level: float) -> float:
        """Electrical power at a level: LED drivers scale almost linearly, discharge lamps less."""
        if level <= 0:
            return 0.0
        lamp = self.lamp
        if lamp.tech == "LED":
            factor = 0.08 + 0.92 * level / 100
        else:
            factor = 0.45 + 0.55 * level / 100  # bi-power ballasts cannot go much lower
        return round(lamp.nominal_w * BALLAST[lamp.tech] * factor, 1)

    def next_reading(self, now: datetime, rng: random.Random) -> list[Output]:
        level, power, status = self.state(now)
        if self.last is not None:
            hours = (now - self.last).total_seconds() / 3600
            self.energy_wh += power * hours
            if power > 0:
                self.hours += hours
            self._account(now, hours, level, power, status)
        self.last = now
        on = 1.0 if power > 0 else 0.0
        values = {"lamp_on": on, "dimming_pct": level if on or status != "ok" else 0.0,
                  "lamp_power_w": power, "energy_import_wh": round(self.energy_wh, 1),
                  "burning_hours_h": round(self.hours, 3)}
        return [Sample(now, values, {"status": status})]


class CabinetModel:
    """A lighting cabinet: three phases feeding its lamps, metered at the cabinet."""

    def __init__(self, cabinet: Cabinet, lamps: list[LampModel], *, interval_s: float,
                 injections: list[Injection] | None, rng: random.Random) -> None:
        self.cabinet = cabinet
        self.device_id = cabinet.device_id
        self.lamps = lamps
        self.interval = timedelta(seconds=interval_s)
        self.injections = injections if injections is not None else []
        self.energy_wh = float(rng.randrange(1_000_000, 40_000_000))
        self.last: datetime | None = None

    def first_due(self, start: datetime) -> datetime:
        return _first(start, self.interval, self.device_id)

    def next_due(self, now: datetime) -> datetime:
        return now + self.interval

    def next_reading(self, now: datetime, rng: random.Random) -> list[Output]:
        phases: list[float] = [0.0, 0.0, 0.0]
        for i, lamp in enumerate(self.lamps):
            phases[i % 3] += lamp.state(now)[1]
        lit = any(p > 0 for p in phases)
        if (a := active(self.injections, "cabinet_overconsumption", now)) is not None and lit:
            # An insulation fault or failing ballasts: the cabinet draws more than its lamps use.
            phases = [p * a.params.get("ratio", 1.5) for p in phases]
        total = sum(phases)
        if self.last is not None:
            self.energy_wh += total * (now - self.last).total_seconds() / 3600
        self.last = now
        values: dict[str, float] = {}
        for k, p in enumerate(phases, start=1):
            v = round(231.0 + rng.gauss(0, 1.0), 1)
            values[f"voltage_l{k}_v"] = v
            values[f"current_l{k}_a"] = round(p / v / 0.95, 2)
        values["active_power_w"] = round(total, 1)
        values["energy_import_wh"] = round(self.energy_wh, 1)
        return [Sample(now, values)]


class PresenceModel:
    """A presence sensor counting passages since its previous report."""

    def __init__(self, device_id: str, street: Street, *, interval_s: float) -> None:
        self.device_id = device_id
        self.street = street
        self.interval = timedelta(seconds=interval_s)
        self.last: datetime | None = None

    def first_due(self, start: datetime) -> datetime:
        return _first(start, self.interval, self.device_id)

    def next_due(self, now: datetime) -> datetime:
        return now + self.interval

    def next_reading(self, now: datetime, rng: random.Random) -> list[Output]:
        count = self.street.passes(self.last or now - self.interval, now)
        self.last = now
        return [Sample(now, {"presence_count": float(count)})]


class LuminosityModel:
    """A light sensor reporting natural illuminance."""

    def __init__(self, sensor: LuminositySensor, seed: int, *, interval_s: float) -> None:
        self.sensor = sensor
        self.device_id = sensor.device_id
        self.seed = seed
        self.interval = timedelta(seconds=interval_s)

    def first_due(self, start: datetime) -> datetime:
        return _first(start, self.interval, self.device_id)

    def next_due(self, now: datetime) -> datetime:
        return now + self.interval

    def next_reading(self, now: datetime, rng: random.Random) -> list[Output]:
        lux = weather.illuminance_lux(self.seed, self.sensor.lat, self.sensor.lon, now)
        return [Sample(now, {"illuminance_lux": round(lux * rng.uniform(0.95, 1.05), 2)})]
