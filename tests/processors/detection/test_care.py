"""Care rules (`care`, `care_routine`) on a synthetic dwelling: a resident's weeks (sleep, night
trips, outings, naps) stay quiet; falls, panic, inactivity, wandering, heat, cold and batteries
open with evidence and clear."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from maillage.envelope import Envelope, SourceFormat, to_us
from maillage.processors.detection import care, care_routine
from maillage.processors.detection.engine import Engine
from maillage.processors.detection.model import DeviceInfo, Severity, Transition

PARIS = ZoneInfo("Europe/Paris")
S = 1_000_000
MIN = 60 * S
DAY0 = datetime(2026, 1, 5, tzinfo=PARIS)  # a Monday


def dev(name: str, dtype: str) -> DeviceInfo:
    meta: dict[str, object] = {"resident": "R-0badcafe"}
    if dtype != "care_hub":
        meta["hub"] = "h1-hub"
    return DeviceInfo("t1", f"h1-{name}", dtype, tz=PARIS, dwelling="log-1", meta=meta,
                      expected_interval_s=600 if dtype == "care_env" else 900)


HUB = dev("hub", "care_hub")
LIVING = dev("motion-living", "care_motion")
KITCHEN = dev("motion-kitchen", "care_motion")
BATH = dev("motion-bathroom", "care_motion")
DOOR = dev("door", "care_door")
BED = dev("bed", "care_bed")
BUTTON = dev("button", "care_button")
ENV = dev("env", "care_env")
SENSORS = (LIVING, KITCHEN, BATH, DOOR, BED, BUTTON)


def at(day: int, hours: float) -> int:
    """Epoch µs of local time `hours` on day `day` after DAY0."""
    return to_us(DAY0 + timedelta(days=day, hours=hours))


def event(d: DeviceInfo, ts: int, name: str, **values: float) -> tuple[DeviceInfo, Envelope]:
    return d, Envelope.trusted(d.tenant, d.device_id, "event", ts, ts + 200_000,
                               SourceFormat.EVENT, dict(values), {}, event=name)


def reading(d: DeviceInfo, ts: int, **values: float) -> tuple[DeviceInfo, Envelope]:
    return d, Envelope.trusted(d.tenant, d.device_id, "reading", ts, ts + 200_000,
                               SourceFormat.JSON, dict(values), {})


Rec = tuple[DeviceInfo, Envelope]


class Life:
    """A resident's days: where they are, and what the sensors send (events and heartbeats)."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.recs: list[Rec] = []
        self.place: dict[int, str] = {}  # minute -> place, for the heartbeats

    def stay(self, start: int, end: int, place: str) -> None:
        """The resident is at `place` over [start, end): motion events every 2-5 minutes."""
        for m in range(start // MIN, end // MIN):
            self.place[m] = place
        room = {"living": LIVING, "kitchen": KITCHEN, "bathroom": BATH}.get(place)
        t = start + self.rng.randint(1, 8) * S
        while room is not None and t < end:
            self.recs.append(event(room, t, "motion"))
            t += self.rng.randint(90, 300) * S

    def day(self, d: int, *, trips: int = 1, outing: bool = True, nap: bool = False) -> None:
        """A day from waking to the next waking."""
        r = self.rng
        wake = at(d, 7.5 + r.uniform(-0.3, 0.3))
        self.recs.append(event(BED, wake, "bed_exit"))
        t = wake
        plan = [("bathroom", 20), ("kitchen", 30), ("living", 150), ("kitchen", 60)]
        if nap:
            plan += [("bed", 60)]
        plan += [("living", 60)]
        if outing:
            plan += [("out", r.uniform(60, 140))]
        plan += [("living", 180), ("kitchen", 45)]
        bedtime = at(d, 22.5 + r.uniform(-0.3, 0.3))
        for place, minutes in plan:
            end = t + int(minutes * MIN)
            self.go(t, end, place)
            t = end
        self.go(t, bedtime, "living")
        nxt = at(d + 1, 7.5 + r.uniform(-0.3, 0.3))
        self.go(bedtime, nxt, "bed", trips=trips)

    def go(self, start: int, end: int, place: str, *, trips: int = 0) -> None:
        if place == "out":
            self.recs += [event(DOOR, start - 20 * S, "door_open"), event(DOOR, start, "door_closed"),
                          event(DOOR, end, "door_open"), event(DOOR, end + 15 * S, "door_closed")]
            for m in range(start // MIN, end // MIN):
                self.place[m] = "out"
            return
        if place != "bed":
            self.stay(start, end, place)
            return
        self.recs.append(event(BED, start + 20 * S, "bed_enter"))
        t = start
        for k in range(trips):
            exit_ = start + (end - start) * (k + 1) // (trips + 1)
            back = exit_ + self.rng.randint(4, 12) * MIN
            for m in range(t // MIN, exit_ // MIN):
                self.place[m] = "bed"
            self.recs.append(event(BED, exit_, "bed_exit"))
            self.stay(exit_, back, "bathroom")
            self.recs.append(event(BED, back + 10 * S, "bed_enter"))
            t = back
        for m in range(t // MIN, end // MIN):
            self.place[m] = "bed"

    def heartbeats(self, start: int, end: int, temp: float = 20.5) -> None:
        """Sensor heartbeats every 15 minutes, the climate every 10, the hub's link."""
        t = start
        while t < end:
            place = self.place.get(t // MIN, "living")
            for d in SENSORS:
                values: dict[str, float] = {"battery_pct": 80.0}
                if d.type == "care_motion":
                    values["motion"] = float(d.device_id.endswith(place))
                elif d is BED:
                    values["bed_occupied"] = float(place == "bed")
                elif d is DOOR:
                    values["door_open"] = 0.0
                self.recs.append(reading(d, t + 7 * S, **values))
            self.recs.append(reading(HUB, t + 9 * S, rssi_dbm=-60.0))
            t += 15 * MIN
        t = start
        while t < end:
            self.recs.append(reading(ENV, t + 3 * S, temperature_c=temp, humidity_pct=50.0,
                                     battery_pct=70.0))
            t += 10 * MIN

    def sorted(self) -> list[Rec]:
        return sorted(self.recs, key=lambda r: r[1].ts_us)


def week(days: int = 7, seed: int = 1) -> Life:
    """Days of routine from DAY0; the caller adds what follows, then `heartbeats` over it all."""
    life = Life(seed)
    life.go(at(0, 0), at(0, 7.5), "bed")
    for d in range(days):
        life.day(d, trips=d % 3, outing=d % 2 == 0, nap=d % 3 == 1)
    return life


def still(life: Life, start: int, end: int, place: str = "still") -> None:
    """The resident does not move (or lies on the floor) over [start, end)."""
    for m in range(start // MIN, end // MIN):
        life.place[m] = place


def engine() -> Engine:
    return Engine(care.RULES, care.GROUP_RULES, online=False)


def run(eng: Engine, recs: list[Rec]) -> list[Transition]:
    out: list[Transition] = []
    for d, env in recs:
        out += eng.handle(d, env)
    return out


def kinds(ts: list[Transition]) -> list[tuple[str, str, str]]:
    return [(t.change, str(t.anomaly.kind), t.anomaly.device_id) for t in ts]


def test_normal_weeks_are_quiet() -> None:
    """Two weeks of routine (sleep, night trips, naps, outings): no anomaly at all."""
    life = week(14)
    life.heartbeats(at(0, 0), at(14, 7))
    assert run(engine(), life.sorted()) == []


def test_long_inactivity_raised_on_the_hub_and_cleared() -> None:
    """After a learned week, five still hours in the morning: long_inactivity on the hub."""
    life = week(7)
    t0, t1 = at(7, 10.0), at(7, 15.0)
    life.go(at(7, 0), at(7, 7.5), "bed")
    life.recs.append(event(BED, at(7, 7.5), "bed_exit"))
    life.stay(at(7, 7.5), t0, "kitchen")
    still(life, t0, t1)
    life.stay(t1, at(7, 18), "living")
    life.heartbeats(at(0, 0), at(7, 18))
    eng = engine()
    before = run(eng, [r for r in life.sorted() if r[1].ts_us < at(7, 0)])
    assert before == []
    out = run(eng, [r for r in life.sorted() if r[1].ts_us >= at(7, 0)])
    assert kinds(out) == [("open", "long_inactivity", "h1-hub"),
                          *[("update", "long_inactivity", "h1-hub")] * (len(out) - 2),
                          ("close", "long_inactivity", "h1-hub")]
    opened, closed = out[0].anomaly, out[-1].anomaly
    assert t0 - 5 * MIN <= opened.start_us <= t0  # since the last activity
    assert opened.severity == Severity.WARNING
    ev = opened.evidence
    assert ev["inactive_min"] >= ev["threshold_min"] >= care_routine.GAP_FLOOR_MIN
    assert ev["usual_max_min_at_this_hour"] < 30  # the resident moves every few minutes
    assert ev["since_local"][:2] in ("09", "10")
    assert "resident" not in ev
    assert t1 <= closed.end_us <= t1 + 10 * MIN
    assert out[-2].anomaly.evidence["inactive_min"] >= 150  # updated as it went on


def test_time_on_the_floor_after_a_fall_is_the_fall_only() -> None:
    """A fall, two hours on the floor: one critical fall, no inactivity on top; a second fall later
    is a second anomaly, and the same event received again is not."""
    life = week(7)
    life.go(at(7, 0), at(7, 7.5), "bed")
    life.recs.append(event(BED, at(7, 7.5), "bed_exit"))
    life.stay(at(7, 7.5), at(7, 10), "kitchen")
    fall = event(BUTTON, at(7, 10), "fall_detected")
    life.recs += [fall, fall]
    still(life, at(7, 10), at(7, 12), "floor")
    life.recs += [event(DOOR, at(7, 12), "door_open"), event(DOOR, at(7, 12.01), "door_closed")]
    life.stay(at(7, 12.02), at(7, 16), "living")
    life.recs.append(event(BUTTON, at(7, 15), "fall_detected"))
    life.heartbeats(at(0, 0), at(7, 16))
    out = run(engine(), life.sorted())
    assert kinds(out) == [("open", "fall", "h1-button"), ("open", "fall", "h1-button")]
    first = out[0].anomaly
    assert first.severity == Severity.CRITICAL and first.score == 1.0
    assert first.start_us == at(7, 10)
    assert first.evidence == {"event": "fall_detected", "dwelling": "log-1",
                              "resident": "R-0badcafe"}
    assert out[0].anomaly.id != out[1].anomaly.id


def test_panic_button_is_immediate() -> None:
    out = run(engine(), [event(BUTTON, at(0, 11), "panic_button")])
    assert kinds(out) == [("open", "panic_button", "h1-button")]
    assert out[0].anomaly.severity == Severity.CRITICAL


@pytest.mark.parametrize("trigger", ["door", "bed_empty"])
def test_night_wandering(trigger: str) -> None:
    """At 02:30 the resident leaves the bed and opens the door, or stays up an hour: wandering."""
    life = week(7)
    life.go(at(6, 22.5), at(7, 2.5), "bed")
    life.recs.append(event(BED, at(7, 2.5), "bed_exit"))
    if trigger == "door":
        life.stay(at(7, 2.5), at(7, 2.6), "living")
        life.go(at(7, 2.6), at(7, 3.0), "out")
        life.stay(at(7, 3.0), at(7, 3.2), "living")
    else:
        life.stay(at(7, 2.5), at(7, 3.2), "kitchen")
    life.go(at(7, 3.2), at(7, 7.5), "bed")
    life.heartbeats(at(0, 0), at(7, 7.5))
    out = run(engine(), life.sorted())
    assert kinds(out) == [("open", "night_wandering", "h1-hub"),
                          ("close", "night_wandering", "h1-hub")]
    opened, closed = out[0].anomaly, out[1].anomaly
    if trigger == "door":
        assert opened.evidence["trigger"] == "door_open"
        assert opened.start_us == at(7, 2.6) - 20 * S
    else:
        ev = opened.evidence
        assert ev["trigger"] == "bed_empty" and opened.start_us == at(7, 2.5)
        assert ev["bed_empty_min"] > ev["threshold_min"] >= care_routine.NIGHT_TRIP_FLOOR_MIN
    assert opened.evidence["local_time"].startswith("02:")
    assert closed.end_us == at(7, 3.2) + 20 * S


@pytest.mark.parametrize(("temp", "kind", "clear"), [(30.0, "indoor_heat", 25.0),
                                                      (15.5, "indoor_cold", 19.0)])
def test_indoor_climate_held_for_hours(temp: float, kind: str, clear: float) -> None:
    """Three hours past the threshold open (from when it began); back within it closes; an hour
    past it does not."""
    eng = engine()
    ts = [at(0, 8) + k * 10 * MIN for k in range(60)]
    temps = [20.5] * 6 + [temp] * 6 + [20.5] * 6 + [temp] * 24 + [clear] * 18
    out = run(eng, [reading(ENV, t, temperature_c=c) for t, c in zip(ts, temps, strict=True)])
    assert kinds(out) == [("open", kind, "h1-env"), ("close", kind, "h1-env")]
    opened = out[0].anomaly
    assert opened.start_us == ts[18]
    assert opened.evidence["threshold_c"] in (care.HEAT_C, care.COLD_C)
    assert opened.evidence["hours"] >= 2
    assert out[1].anomaly.end_us == ts[42]


def test_climate_noise_around_the_threshold_does_not_flap() -> None:
    """Noisy readings around 28 °C after a real heat spell: one anomaly, one close."""
    rng = random.Random(3)
    temps = [29.0 + rng.gauss(0, 0.3) for _ in range(40)] + [26.0] * 5
    out = run(engine(), [reading(ENV, at(0, 8) + k * 10 * MIN, temperature_c=round(c, 1))
                         for k, c in enumerate(temps)])
    assert kinds(out) == [("open", "indoor_heat", "h1-env"), ("close", "indoor_heat", "h1-env")]


@pytest.mark.parametrize("how", ["level", "event"])
def test_battery_low_until_replaced(how: str) -> None:
    """A level under 15 % (or the device's own event) opens; 20 % keeps it; a new battery clears."""
    recs = [reading(DOOR, at(0, 8), battery_pct=40.0, door_open=0.0)]
    if how == "level":
        recs.append(reading(DOOR, at(0, 9), battery_pct=12.0, door_open=0.0))
    else:
        recs.append(event(DOOR, at(0, 9), "battery_low"))
    recs += [reading(DOOR, at(0, 10), battery_pct=20.0, door_open=0.0),
             reading(DOOR, at(0, 11), battery_pct=98.0, door_open=0.0)]
    out = run(engine(), recs)
    assert kinds(out) == [("open", "battery_low", "h1-door"), ("close", "battery_low", "h1-door")]
    assert out[0].anomaly.severity == Severity.INFO
    assert out[0].anomaly.start_us == at(0, 9)
    assert out[1].anomaly.end_us == at(0, 11)


def test_memory_round_trips_through_json() -> None:
    """Device and dwelling memories are plain JSON; reloaded, the rules decide the same."""
    life = week(7)
    life.go(at(7, 0), at(7, 7.5), "bed")
    life.recs.append(event(BED, at(7, 7.5), "bed_exit"))
    life.stay(at(7, 7.5), at(7, 9), "kitchen")
    still(life, at(7, 9), at(7, 13))
    life.stay(at(7, 13), at(7, 15), "living")
    life.heartbeats(at(0, 0), at(7, 15))
    recs = life.sorted()
    cut = next(i for i, r in enumerate(recs) if r[1].ts_us >= at(7, 8))
    eng = engine()
    run(eng, recs[:cut])
    copy = engine()
    for key, st in eng.devices.items():
        copy.put_device(key, type(st).from_json(st.to_json()))
    for key, gst in eng.groups.items():
        loaded = type(gst).from_json(gst.to_json())
        assert loaded.memory == orjson.loads(orjson.dumps(gst.memory))
        copy.put_group(key, loaded)
    a, b = run(eng, recs[cut:]), run(copy, recs[cut:])
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]
    assert ("open", "long_inactivity", "h1-hub") in kinds(a)


def test_local_time_follows_daylight_saving() -> None:
    """Local minutes come from the zone, summer time included."""
    mem: dict[str, object] = {}
    winter = to_us(datetime(2026, 1, 5, 3, 0, tzinfo=PARIS))
    summer = to_us(datetime(2026, 7, 5, 3, 0, tzinfo=PARIS))
    assert care_routine._local_min(PARIS, mem, winter) == 180
    assert care_routine._local_min(PARIS, mem, summer) == 180


def test_held_back_sensor_does_not_make_inactivity() -> None:
    """The living-room sensor's records of three hours arrive late, in one burst, while the
    resident sits there: nothing is known missing, so nothing is raised."""
    life = week(7)
    life.go(at(7, 0), at(7, 7.5), "bed")
    life.recs.append(event(BED, at(7, 7.5), "bed_exit"))
    life.stay(at(7, 7.5), at(7, 9), "kitchen")
    life.stay(at(7, 9), at(7, 12), "living")
    life.stay(at(7, 12), at(7, 14), "kitchen")
    life.heartbeats(at(0, 0), at(7, 14))
    recs = life.sorted()
    held = [r for r in recs if r[0] is LIVING and at(7, 9) <= r[1].ts_us < at(7, 12)]
    rest = [r for r in recs if not (r[0] is LIVING and at(7, 9) <= r[1].ts_us < at(7, 12))]
    cut = next(i for i, r in enumerate(rest) if r[1].ts_us >= at(7, 12.5))
    out = run(engine(), [*rest[:cut], *held, *rest[cut:]])
    assert out == []


def test_panic_pressed_while_out_keeps_the_outing() -> None:
    """A pendant press during an outing is activity, but the resident is still out: the gap that
    follows is judged as an outing, not as inactivity at home."""
    life = week(7)
    life.go(at(7, 0), at(7, 7.5), "bed")
    life.recs.append(event(BED, at(7, 7.5), "bed_exit"))
    life.stay(at(7, 7.5), at(7, 14), "living")
    life.go(at(7, 14), at(7, 17), "out")
    life.stay(at(7, 17), at(7, 19), "living")
    life.recs.append(event(BUTTON, at(7, 14.5), "panic_button"))
    life.heartbeats(at(0, 0), at(7, 19))
    out = run(engine(), life.sorted())
    assert kinds(out) == [("open", "panic_button", "h1-button")]


def test_dwelling_without_bed_sensor_sleeps_at_night() -> None:
    """No bed sensor: the evening-to-morning gap is the night's sleep, not inactivity; a still
    day is still raised."""
    life = week(7)
    still(life, at(7, 10), at(7, 15))
    life.stay(at(7, 7.5), at(7, 10), "kitchen")
    life.stay(at(7, 15), at(7, 17), "living")
    life.heartbeats(at(0, 0), at(7, 17))
    recs = [r for r in life.sorted() if r[0] is not BED]
    out = run(engine(), recs)
    assert kinds(out) == [("open", "long_inactivity", "h1-hub"),
                          *[("update", "long_inactivity", "h1-hub")] * (len(out) - 2),
                          ("close", "long_inactivity", "h1-hub")]
    assert out[0].anomaly.start_us >= at(7, 9.9)


def test_bed_clock_running_behind_makes_no_inactivity() -> None:
    """The bed sensor's clock is 30 minutes behind: its entries are stamped before the last
    motion, yet the resident in bed is not inactive, nor a night trip long. Records arrive in
    receive order."""
    life = week(10)
    life.heartbeats(at(0, 0), at(10, 7))
    skewed = []
    for d, env in life.recs:
        if d is BED:
            env = Envelope.trusted(d.tenant, d.device_id, env.kind, env.ts_us - 30 * MIN,
                                   env.rx_us, env.source_format, dict(env.values), {},
                                   event=env.event)
        skewed.append((d, env))
    skewed.sort(key=lambda r: r[1].rx_us)
    assert run(engine(), skewed) == []
