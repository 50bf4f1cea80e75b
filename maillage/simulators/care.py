"""Home care: a resident's daily routine and the sensor events and readings it produces.

A day plan runs from one wake-up to the next as a list of (start, end, place) segments. It is a
pure function of (seed, home, local date, injected anomalies), so every sensor of the home can
ask for it independently and they all agree.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from maillage.simulators import weather
from maillage.simulators.anomalies import Injection, active
from maillage.simulators.base import DeviceEvent, Output, Sample
from maillage.simulators.territory import CARE_ROOMS, CareHome

ROOMS_WITH_MOTION = frozenset(CARE_ROOMS)
# Places without a motion sensor firing: in bed, away, on the floor after a fall, motionless.
QUIET = frozenset({"bed", "out", "floor", "still"})


@dataclass(frozen=True, slots=True)
class Segment:
    """The resident is at `place` over [start, end)."""

    start: datetime
    end: datetime
    place: str


@dataclass
class DayPlan:
    """One wake-to-wake day: where the resident is, and the events each sensor sends."""

    segments: list[Segment]
    events: dict[str, list[DeviceEvent]] = field(default_factory=dict)

    def place_at(self, t: datetime) -> str:
        i = bisect.bisect_right([s.start for s in self.segments], t) - 1
        return self.segments[max(i, 0)].place


def _hours(day: date, h: float, tz: ZoneInfo) -> datetime:
    """`h` hours after local midnight of `day` (wall-clock hours; fine outside DST nights)."""
    base = datetime(day.year, day.month, day.day, tzinfo=tz)
    return (base + timedelta(hours=h)).astimezone(UTC)


def paint(segments: list[Segment], start: datetime, end: datetime, place: str) -> list[Segment]:
    """The plan with [start, end) replaced by `place` (segments cut where needed)."""
    out: list[Segment] = []
    for s in segments:
        if s.end <= start or s.start >= end:
            out.append(s)
            continue
        if s.start < start:
            out.append(Segment(s.start, start, s.place))
        if s.end > end:
            out.append(Segment(end, s.end, s.place))
    out.append(Segment(start, end, place))
    out.sort(key=lambda s: s.start)
    return out


class HomeLife:
    """The resident's life in one dwelling: day plans and the sensor events they imply."""

    def __init__(self, home: CareHome, *, seed: int, tz: ZoneInfo,
                 injections: list[Injection]) -> None:
        self.home, self.seed, self.tz = home, seed, tz
        self.injections = injections
        self._cache: dict[date, DayPlan] = {}

    def add(self, inj: Injection) -> None:
        """A newly planned anomaly: plans are rebuilt with it."""
        self.injections.append(inj)
        self._cache.clear()

    def wake(self, day: date) -> datetime:
        """Wake-up time of a local day: habit, weekday and a little chance."""
        h = self.home.wake_h + 0.3 * weather.gauss_noise("wake", self.seed, self.home.home_id, day)
        if day.weekday() >= 5:
            h += 0.25
        return _hours(day, h, self.tz).replace(microsecond=0)

    def plan_for(self, t: datetime) -> DayPlan:
        """The plan covering time t."""
        d = t.astimezone(self.tz).date()
        return self.plan(d if t >= self.wake(d) else d - timedelta(days=1))

    def plan(self, day: date) -> DayPlan:
        """The plan from the wake-up of `day` to the next one."""
        plan = self._cache.get(day)
        if plan is None:
            rng = random.Random(f"{self.seed}/{self.home.home_id}/{day.isoformat()}")
            segments = self._apply_anomalies(self._routine(day, rng), rng)
            plan = DayPlan(segments, self._events(segments, rng))
            if len(self._cache) >= 6:
                self._cache.pop(min(self._cache))
            self._cache[day] = plan
        return plan

    def _routine(self, day: date, rng: random.Random) -> list[Segment]:
        home, tz = self.home, self.tz
        wake, next_wake = self.wake(day), self.wake(day + timedelta(days=1))
        at = wake
        segs: list[Segment] = []

        def stay(place: str, minutes: float) -> None:
            nonlocal at
            end = min(at + timedelta(minutes=max(1.0, minutes)), next_wake)
            if end > at:
                segs.append(Segment(at, end, place))
                at = end

        def until(place: str, hour: float) -> None:
            target = _hours(day, hour, tz)
            if target > at:
                stay(place, (target - at).total_seconds() / 60)

        def sit_until(hour: float, spell: tuple[float, float], bathroom_p: float) -> None:
            """Spells in the living room, now and then the bathroom, until `hour`."""
            while at < _hours(day, hour - 0.3, tz):
                stay("living", rng.uniform(*spell))
                if rng.random() < bathroom_p:
                    stay("bathroom", rng.uniform(4, 10))
            until("living", hour)

        stay("bathroom", rng.uniform(12, 25))
        stay("kitchen", rng.uniform(20, 40))
        sit_until(rng.uniform(11.6, 12.2), (30, 80), 0.35)
        stay("kitchen", rng.uniform(45, 75))
        if home.naps:
            until("living", rng.uniform(13.7, 14.3))
            stay("bed", rng.uniform(40, 90))
        if rng.random() < home.outing_prob:
            until("living", rng.uniform(14.5, 15.8))
            stay("out", rng.uniform(50, 150))
        sit_until(rng.uniform(18.7, 19.4), (30, 70), 0.3)
        stay("kitchen", rng.uniform(35, 55))
        bed = home.bed_h + rng.gauss(0, 0.35)
        until("living", bed - 0.2)
        stay("bathroom", rng.uniform(8, 15))
        # The night, with zero to two trips to the bathroom.
        night_start = at
        trips = rng.choices((0, 1, 2), weights=(0.3, 0.5, 0.2))[0]
        night_len = (next_wake - night_start).total_seconds() / 60
        marks = sorted(rng.uniform(0.15, 0.85) * night_len for _ in range(trips))
        for m in marks:
            until("bed", (night_start - _hours(day, 0, tz)).total_seconds() / 3600 + m / 60)
            stay("bathroom", rng.uniform(4, 12))
        stay("bed", (next_wake - at).total_seconds() / 60)
        return segs

    def _apply_anomalies(self, segs: list[Segment], rng: random.Random) -> list[Segment]:
        first, last = segs[0].start, segs[-1].end
        for inj in self.injections:
            if inj.end <= first or inj.start >= last:
                continue
            if inj.kind == "fall":
                segs = paint(segs, inj.start, inj.end, "floor")
            elif inj.kind == "long_inactivity":
                segs = paint(segs, inj.start, inj.end, "still")
            elif inj.kind == "night_wandering":
                t = inj.start
                while t < inj.end:
                    step = min(inj.end, t + timedelta(minutes=rng.uniform(3, 10)))
                    segs = paint(segs, t, step, rng.choice(("living", "kitchen", "out",
                                                             "living", "bathroom")))
                    t = step
        return segs

    def _events(self, segs: list[Segment], rng: random.Random) -> dict[str, list[DeviceEvent]]:
        home = self.home
        ev: dict[str, list[DeviceEvent]] = {}

        def emit(device: str, ts: datetime, name: str, **details: str | float) -> None:
            ev.setdefault(device, []).append(DeviceEvent(ts.replace(microsecond=0), name, details))

        # Every plan starts at the wake-up: the night before ended in bed.
        prev: Segment | None = Segment(segs[0].start, segs[0].start, "bed")
        for s in segs:
            if prev is not None and prev.place != s.place:
                if prev.place == "bed":
                    emit(home.bed, s.start, "bed_exit")
                if s.place == "bed":
                    emit(home.bed, s.start + timedelta(seconds=rng.uniform(5, 40)), "bed_enter")
                if s.place == "out" or prev.place == "out":
                    door_t = s.start - timedelta(seconds=rng.uniform(10, 40)) if s.place == "out" else s.start
                    emit(home.door, door_t, "door_open")
                    emit(home.door, door_t + timedelta(seconds=rng.uniform(5, 25)), "door_closed")
                if prev.place == "floor":
                    # Help arrives: someone comes in.
                    emit(home.door, s.start - timedelta(seconds=90), "door_open")
                    emit(home.door, s.start - timedelta(seconds=70), "door_closed")
            if s.place in ROOMS_WITH_MOTION:
                # A PIR sensor fires on entry, then again after its blind time while someone moves.
                t = s.start + timedelta(seconds=rng.uniform(1, 8))
                while t < s.end:
                    emit(home.motion(s.place), t, "motion")
                    t += timedelta(seconds=rng.uniform(90, 300))
            prev = s
        for inj in self.injections:
            if inj.kind == "fall" and segs[0].start <= inj.start < segs[-1].end:
                emit(home.button, inj.start, "fall_detected")
            elif inj.kind == "panic_button" and segs[0].start <= inj.start < segs[-1].end:
                emit(home.button, inj.start, "panic_button")
        for events in ev.values():
            events.sort(key=lambda e: e.ts)
        return ev

    def events_between(self, device: str, start: datetime, end: datetime) -> list[DeviceEvent]:
        """Events of a sensor in (start, end]."""
        out: list[DeviceEvent] = []
        for plan in self._plans(start, end):
            out += [e for e in plan.events.get(device, []) if start < e.ts <= end]
        return sorted(out, key=lambda e: e.ts)

    def next_event(self, device: str, after: datetime) -> datetime | None:
        """Time of the sensor's next event after `after` (looking a day ahead at most)."""
        for plan in self._plans(after, after + timedelta(days=1)):
            for e in plan.events.get(device, []):
                if e.ts > after:
                    return e.ts
        return None

    def _plans(self, start: datetime, end: datetime) -> list[DayPlan]:
        d0 = start.astimezone(self.tz).date() - timedelta(days=1)
        d1 = end.astimezone(self.tz).date()
        out: list[DayPlan] = []
        d = d0
        while d <= d1:
            plan = self.plan(d)
            if plan.segments[-1].end > start and plan.segments[0].start <= end:
                out.append(plan)
            d += timedelta(days=1)
        return out

    def indoor_c(self, t: datetime) -> float:
        """Indoor temperature: heated to the set-point in winter, following the weather in summer."""
        home = self.home
        day = t.astimezone(self.tz).date()
        out_mean = weather.daily_mean_c(self.seed, home.commune, day)
        out_now = weather.outdoor_c(self.seed, home.commune, home.lon, t)
        local_h = t.astimezone(self.tz).hour
        setpoint = home.heating_setpoint_c - (1.2 if local_h < 6 or local_h >= 23 else 0.0)
        leak = 1 - home.insulation
        free_running = 20.5 + leak * 0.7 * (out_mean - 17) + leak * 0.25 * (out_now - out_mean)
        temp = max(setpoint, free_running)
        if (a := active(self.injections, "indoor_heat", t)) is not None:
            ramp = min(1.0, (t - a.start).total_seconds() / 7200)
            temp = max(temp, temp + ramp * (a.params.get("target_c", 31.0) - temp))
        if (a := active(self.injections, "indoor_cold", t)) is not None:
            ramp = min(1.0, (t - a.start).total_seconds() / 10800)
            temp = temp + ramp * (a.params.get("target_c", 14.0) - temp)
        return temp


class CareDeviceModel:
    """One care sensor (or the hub): its events as they happen, and a periodic heartbeat."""

    def __init__(self, device_id: str, kind: str, life: HomeLife, *, heartbeat_s: float,
                 start: datetime, injections: list[Injection], rng: random.Random) -> None:
        self.device_id = device_id
        self.kind = kind  # motion-<room> | door | bed | button | env | hub
        self.life = life
        self.heartbeat = timedelta(seconds=heartbeat_s)
        self.injections = injections
        self.anchor = start
        self.battery0 = rng.uniform(55, 100)
        self.drain_per_day = rng.uniform(0.02, 0.05) * (2 if kind == "env" else 1)
        self.last: datetime | None = None
        self.next_beat = start

    def first_due(self, start: datetime) -> datetime:
        self.next_beat = start + timedelta(
            seconds=min(self.heartbeat.total_seconds(), 3.0) * (weather.noise("b", self.device_id) + 1) / 2)
        return self.next_beat

    def next_due(self, now: datetime) -> datetime:
        nxt = self.next_beat
        if self.kind != "env" and self.kind != "hub":
            ev = self.life.next_event(self.device_id, now)
            if ev is not None and ev < nxt:
                nxt = ev
        for inj in self.injections:
            if inj.kind == "battery_low" and now < inj.start < nxt:
                nxt = inj.start
        return max(nxt, now + timedelta(seconds=1))

    def battery(self, t: datetime) -> float:
        """Battery level: slow drain; very low while a battery_low anomaly runs; new after it."""
        days = (t - self.anchor).total_seconds() / 86400
        pct = self.battery0 - self.drain_per_day * days
        for inj in self.injections:
            if inj.kind == "battery_low":
                if inj.active(t):
                    return round(max(1.0, 8.0 - 2 * (t - inj.start).total_seconds() / 86400), 1)
                if t >= inj.end:
                    pct = 100 - self.drain_per_day * (t - inj.end).total_seconds() / 86400
        return round(max(1.0, pct), 1)

    def next_reading(self, now: datetime, rng: random.Random) -> list[Output]:
        since = self.last or now - timedelta(seconds=1)
        self.last = now
        if active(self.injections, "sensor_offline", now) is not None:
            if now >= self.next_beat:
                self.next_beat = now + self.heartbeat
            return []
        out: list[Output] = []
        if self.kind not in ("env", "hub"):
            out += self.life.events_between(self.device_id, since, now)
        for inj in self.injections:
            if inj.kind == "battery_low" and since < inj.start <= now:
                out.append(DeviceEvent(now, "battery_low", values={"battery_pct": self.battery(now)}))
        if now >= self.next_beat:
            self.next_beat = now + self.heartbeat
            out.append(Sample(now, self._state(now, rng)))
        return out

    def _state(self, t: datetime, rng: random.Random) -> dict[str, float]:
        life = self.life
        if self.kind == "hub":
            return {"rssi_dbm": float(round(rng.gauss(-62, 4)))}
        if self.kind == "env":
            temp = life.indoor_c(t) + rng.gauss(0, 0.15)
            hum = 58 - 0.9 * (temp - 20) + rng.gauss(0, 2)
            return {"temperature_c": round(temp, 1), "humidity_pct": round(min(95, max(20, hum)), 1),
                    "battery_pct": self.battery(t)}
        place = life.plan_for(t).place_at(t)
        values: dict[str, float] = {}
        if self.kind.startswith("motion-"):
            values["motion"] = 1.0 if place == self.kind[7:] else 0.0
        elif self.kind == "bed":
            values["bed_occupied"] = 1.0 if place == "bed" else 0.0
        elif self.kind == "door":
            values["door_open"] = 0.0
        values["battery_pct"] = self.battery(t)
        return values
