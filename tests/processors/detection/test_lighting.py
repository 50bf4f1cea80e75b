"""Lighting rules on synthetic streams of a street: lamps switched by the sun at their position,
dimmed at night like a commune's policy, a cabinet metering them. Each rule fires on its
condition with evidence, stays quiet on normal nights and days, clears, and its memory survives
a JSON round trip."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from astral import Observer
from astral.sun import elevation

from maillage.envelope import Envelope, SourceFormat
from maillage.processors.detection import lighting
from maillage.processors.detection.model import DeviceInfo, Finding, Kind, Severity, group_of

T0 = 1_796_083_200_000_000  # 2026-12-01T00:00:00Z, epoch µs
S = 1_000_000
DAY_S = 86_400
PARIS = ZoneInfo("Europe/Paris")
LAT, LON = 48.11, -1.68
NOMINAL_W = 60.0
LAMPS = [f"l{i}" for i in range(5)]

Override = Callable[[str, int, dict[str, float], dict[str, Any]], None]
"""(lamp or cabinet id, seconds since T0, values, attrs): change a record in place."""


def lamp_info(lamp: str = "l0", **meta: Any) -> DeviceInfo:
    base = {"lamp_tech": "LED", "nominal_power_w": NOMINAL_W, "cabinet": "c1"}
    return DeviceInfo("t", lamp, "streetlight", PARIS, LAT, LON, meta={**base, **meta})


CABINET = DeviceInfo("t", "c1", "lighting_cabinet", PARIS, LAT, LON, meta={"lamps": len(LAMPS)})


@cache
def dark(minute: int) -> bool:
    """The cabinet's astronomical clock: lamps on while the sun is 3 degrees below the horizon."""
    t = datetime.fromtimestamp(T0 / S + minute * 60, UTC)
    return elevation(Observer(LAT, LON), t) < -3.0


def level_at(s: int) -> float:
    """Commanded level: off by day, 50 % from 22:30 to 05:30 local, else full."""
    if not dark(s // 60):
        return 0.0
    local_min = ((s + 3600) % DAY_S) // 60  # Paris is UTC+1 in December
    return 50.0 if local_min >= 22 * 60 + 30 or local_min < 5 * 60 + 30 else 100.0


def lamp_values(level: float, hours: float) -> dict[str, float]:
    power = round(NOMINAL_W * (0.08 + 0.92 * level / 100), 1) if level > 0 else 0.0
    return {"lamp_on": 1.0 if power else 0.0, "dimming_pct": level, "lamp_power_w": power,
            "energy_import_wh": 1000.0, "burning_hours_h": round(hours, 3)}


def street(days: float, override: Override | None = None, *, lamps: list[str] = LAMPS,
           cabinet_ratio: Callable[[int], float] | None = None, boost_every_s: int = 0,
           lamp_every: int = 1, cabinet_every: int = 1,
           stagger: int = 3) -> Iterator[tuple[DeviceInfo, Envelope]]:
    """Lamps report every `lamp_every` minutes (lamp i `stagger` x i minutes later), the cabinet
    every `cabinet_every` minutes what its lamps draw at that moment."""
    hours = {lamp: 20_000.0 for lamp in lamps}
    infos = {lamp: lamp_info(lamp) for lamp in lamps}
    for minute in range(int(days * DAY_S / 60)):
        total = 0.0
        for i, lamp in enumerate(lamps):
            s = minute * 60 + 5 * i
            level = level_at(s)
            if boost_every_s and level == 50.0 and s % boost_every_s < 120:
                level = 100.0  # someone walks by: the whole street at full level for 2 minutes
            values = lamp_values(level, hours[lamp])
            attrs: dict[str, Any] = {"status": "ok"}
            if override is not None:
                override(lamp, s, values, attrs)
            if values["lamp_power_w"] > 0:
                hours[lamp] += 1 / 60
            total += values["lamp_power_w"]
            if (minute + stagger * i) % lamp_every:
                continue
            ts = T0 + s * S
            yield infos[lamp], Envelope.trusted("t", lamp, "reading", ts, ts, SourceFormat.JSON,
                                                values, attrs)
        if minute % cabinet_every:
            continue
        s = minute * 60 + 40
        ratio = cabinet_ratio(s) if cabinet_ratio is not None else 1.0
        values = {"active_power_w": round(total * ratio, 1), "voltage_l1_v": 231.0,
                  "energy_import_wh": 5e6}
        ts = T0 + s * S
        yield CABINET, Envelope.trusted("t", "c1", "reading", ts, ts, SourceFormat.JSON, values, {})


def run(records: Iterator[tuple[DeviceInfo, Envelope]], memories: dict[str, Any] | None = None
        ) -> list[tuple[str, Finding]]:
    """Both rule tables as the engine runs them: device memory per device, group memory shared."""
    memories = {} if memories is None else memories
    out: list[tuple[str, Finding]] = []
    for info, env in records:
        for rule in lighting.RULES.get(info.type, ()):
            mem = memories.setdefault(f"{info.device_id}:{rule.__name__}", {})
            out += [(f.device_id or info.device_id, f) for f in rule(info, mem, env)]
        group = group_of(info)
        for rule in lighting.GROUP_RULES.get(info.type, ()):
            mem = memories.setdefault(f"{group}:{rule.__name__}", {})
            out += [(f.device_id or info.device_id, f) for f in rule(info, mem, env)]
    return out


def spans(found: list[tuple[str, Finding]], kind: Kind) -> dict[str, list[tuple[int, int | None]]]:
    """Per device, the (start, end) seconds since T0 of the anomalies of `kind`."""
    out: dict[str, list[tuple[int, int | None]]] = {}
    open_: dict[str, int] = {}
    for dev, f in found:
        if f.kind != kind:
            continue
        if f.active and dev not in open_:
            open_[dev] = f.ts_us
        elif not f.active and dev in open_:
            out.setdefault(dev, []).append(((open_.pop(dev) - T0) // S, (f.ts_us - T0) // S))
    for dev, start in open_.items():
        out.setdefault(dev, []).append(((start - T0) // S, None))
    return out


def daylight(day: int) -> tuple[int, int]:
    """Full daylight of day `day` (0: the first), seconds since T0."""
    lamp = lamp_info()
    w = lighting.day_of(lamp, T0 + (day * DAY_S + 12 * 3600) * S)
    return w[2] - T0 // S, w[3] - T0 // S


# -- quiet -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("boost_every_s", "lamp_every", "cabinet_every", "stagger"),
                         [(0, 1, 1, 3), (1_800, 1, 1, 3), (0, 15, 5, 3), (0, 15, 2, 0),
                          (0, 10, 10, 0)])
def test_quiet_on_normal_days_and_nights(boost_every_s: int, lamp_every: int,
                                         cabinet_every: int, stagger: int) -> None:
    """Three days of switching, night dimming and presence boosts, lamps reporting every minute
    or every quarter of an hour, apart or all at once: not a single finding (the cabinet waits
    until its lamps can have reported since the street switched)."""
    assert run(street(3, boost_every_s=boost_every_s, lamp_every=lamp_every,
                      cabinet_every=cabinet_every, stagger=stagger)) == []


def test_a_day_burner_is_not_a_cabinet_overconsumption() -> None:
    """One lamp lit by day: the cabinet meters it before the lamp's next report, then agrees."""
    at = 10 * 3600 + 10  # 11:00:10 Paris, just after the lamps reported
    found = run(street(1, burning_by_day(at, 14 * 3600), lamp_every=15, cabinet_every=2,
                       stagger=0))
    assert not spans(found, Kind.CABINET_OVERCONSUMPTION)
    assert set(spans(found, Kind.DAY_BURNER)) == {"l1"}


def test_daylight_window_leaves_civil_twilight_to_the_lamps() -> None:
    start, end = daylight(1)
    lit = [m for m in range(start // 60 - 120, end // 60 + 120) if dark(m)]
    assert lit and start < end and all(not start <= m * 60 < end for m in lit)
    assert 7 * 3600 < end - start < 9 * 3600  # a December day in Rennes, less the twilights


# -- lamp failure ----------------------------------------------------------------------------------

def failing(at: int, end: int, *, status: str | None = "lampFailure") -> Override:
    def override(lamp: str, s: int, values: dict[str, float], attrs: dict[str, Any]) -> None:
        if lamp == "l2" and at <= s < end and values["dimming_pct"] > 0:
            values.update(lamp_power_w=0.0)
            if status is None:
                return  # the node says it is on, yet draws nothing
            values.update(lamp_on=0.0)
            attrs["status"] = status
    return override


@pytest.mark.parametrize("status", ["lampFailure", None])
def test_lamp_failure_opens_at_night_and_closes_when_lit_again(status: str | None) -> None:
    at, end = 20 * 3600, DAY_S + 12 * 3600
    found = run(street(2.2, failing(at, end, status=status)))
    (start, stop), = spans(found, Kind.LAMP_FAILURE)["l2"]
    assert at <= start <= at + 60 * (1 if status else 2)
    assert stop is not None and stop > DAY_S + 15 * 3600  # open through the day, closed at dusk
    assert {dev for dev, f in found} == {"l2"}
    first = next(f for _, f in found if f.active)
    assert first.evidence["lamp_power_w"] == 0.0


# -- day burner ------------------------------------------------------------------------------------

def burning_by_day(at: int, end: int) -> Override:
    def override(lamp: str, s: int, values: dict[str, float], attrs: dict[str, Any]) -> None:
        if lamp == "l1" and at <= s < end and values["lamp_power_w"] == 0:
            values.update(lamp_values(100.0, values["burning_hours_h"]))
    return override


def test_day_burner_after_half_an_hour_of_daylight_and_clears() -> None:
    day_start, day_end = daylight(1)
    at, end = DAY_S + 9 * 3600, day_end - 3600
    found = run(street(2, burning_by_day(at, end)))
    (start, stop), = spans(found, Kind.DAY_BURNER)["l1"]
    assert 0 <= start - max(at, day_start) <= 60  # from when it burnt in full daylight
    assert 0 <= stop - end <= 60
    ev = next(f for d, f in found if f.kind == Kind.DAY_BURNER).evidence
    assert ev["daylight_from"] < ev["daylight_to"] and ev["lamp_power_w"] > 0
    assert set(spans(found, Kind.DAY_BURNER)) == {"l1"}


def test_lamp_late_by_twenty_minutes_is_not_a_day_burner() -> None:
    """A lamp whose clock is 20 minutes off burns into daylight briefly: below the hold."""
    _, day_end = daylight(1)
    at = day_end - 20 * 60
    found = run(street(2, burning_by_day(at, day_end + 3600)))
    assert not spans(found, Kind.DAY_BURNER)


# -- burning hours ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("tech", "hours", "expected"), [("HPS", 33_000.0, True),
                                                         ("LED", 40_000.0, False),
                                                         ("MH", 21_000.0, True)])
def test_burning_hours_beyond_rated_life(tech: str, hours: float, expected: bool) -> None:
    lamp = lamp_info(lamp_tech=tech)
    memory: dict[str, Any] = {}
    ts = T0 + 3600 * S
    env = Envelope.trusted("t", "l0", "reading", ts, ts, SourceFormat.JSON,
                           lamp_values(100.0, hours), {"status": "ok"})
    found = list(lighting.lamp_rule(lamp, memory, env))
    assert bool(found) is expected
    if expected:
        f, = found
        assert f.kind == Kind.BURNING_HOURS and f.severity == Severity.INFO
        assert f.evidence["rated_life_h"] < hours
    # A new lamp (counter reset) clears it.
    env = Envelope.trusted("t", "l0", "reading", ts + 60 * S, ts + 60 * S, SourceFormat.JSON,
                           lamp_values(100.0, 3.0), {"status": "ok"})
    again = list(lighting.lamp_rule(lamp, memory, env))
    assert [f.active for f in again] == ([False] if expected else [])


def test_burning_hours_counting_faster_than_time() -> None:
    lamp = lamp_info()
    memory: dict[str, Any] = {}
    found = []
    for k in range(2 * 24 * 4):  # every 15 minutes, the counter gains 30
        ts = T0 + k * 900 * S
        env = Envelope.trusted("t", "l0", "reading", ts, ts, SourceFormat.JSON,
                               lamp_values(100.0, 100.0 + k * 0.5), {"status": "ok"})
        found += [f for f in lighting.lamp_rule(lamp, memory, env) if f.kind == Kind.BURNING_HOURS]
    assert found and all(f.active for f in found)
    assert found[0].ts_us >= T0 + DAY_S * S
    assert found[0].evidence["grown_h"] > found[0].evidence["over_h"] + lighting.BURN_SLACK_H


# -- dimming ---------------------------------------------------------------------------------------

def stays_full(at: int, end: int) -> Override:
    def override(lamp: str, s: int, values: dict[str, float], attrs: dict[str, Any]) -> None:
        if lamp == "l3" and at <= s < end and values["dimming_pct"] == 50.0:
            values.update(lamp_values(100.0, values["burning_hours_h"]))
    return override


def test_dimming_not_applied_against_dimmed_peers() -> None:
    at, end = 14 * 3600, DAY_S + 14 * 3600  # one night at full level, the next dimmed again
    found = run(street(2.2, stays_full(at, end), boost_every_s=3_600))
    spans_ = spans(found, Kind.DIMMING_NOT_APPLIED)
    assert set(spans_) == {"l3"}
    (start, stop), = spans_["l3"]
    dim_start = (21 * 3600 + 30 * 60) + 15  # 22:30 Paris; the lamp's own reporting offset
    assert dim_start <= start <= dim_start + 120
    assert stop is not None and stop > DAY_S + 21 * 3600
    ev = next(f for _, f in found if f.kind == Kind.DIMMING_NOT_APPLIED).evidence
    assert ev["peers_dimmed"] >= 3 and ev["dimming_pct"] == 100.0


def test_held_back_readings_are_not_judged_against_peers_that_moved_on() -> None:
    """A lamp's link is down from 19:00 to 23:30 local: its readings (at full, as all lamps
    were then) arrive after its peers dimmed at 22:30. No dimming anomaly, no cabinet one."""
    held: list[tuple[DeviceInfo, Envelope]] = []
    out: list[tuple[DeviceInfo, Envelope]] = []
    for info, env in street(1.5, lamp_every=5, cabinet_every=5):
        s = (env.ts_us - T0) // S
        if info.device_id == "l4" and 18 * 3600 <= s < 22 * 3600 + 30 * 60:
            held.append((info, env))
            continue
        if held and s >= 22 * 3600 + 30 * 60:
            out += held
            held = []
        out.append((info, env))
    assert run(iter(out)) == []


def test_one_lamp_clock_ahead_does_not_make_its_street_look_late() -> None:
    """Lamp l0's clock runs an hour ahead all night: the cabinet is still judged on time."""
    at = 14 * 3600
    records = []
    for info, env in street(1.8, cabinet_ratio=lambda s: 1.5 if at <= s < DAY_S + 12 * 3600
                            else 1.0, lamp_every=5, cabinet_every=5):
        if info.device_id == "l0" and env.ts_us >= T0 + at * S:
            ts = env.ts_us + 3600 * S
            env = Envelope.trusted("t", "l0", "reading", ts, ts, SourceFormat.JSON,
                                   dict(env.values), dict(env.attrs))
        records.append((info, env))
    (start, _), = spans(run(iter(records)), Kind.CABINET_OVERCONSUMPTION)["c1"]
    first_dark = next(m for m in range(at // 60, DAY_S // 60) if dark(m)) * 60
    assert first_dark <= start <= first_dark + 1800


def test_quiet_lamps_leave_the_cabinet_unjudged() -> None:
    """Two lamps of five stop reporting in the afternoon: at dusk the cabinet feeds them, their
    last reports say 0 W; the sum is incomplete, not the cabinet wrong."""
    records = [(info, env) for info, env in street(1.2, lamp_every=5, cabinet_every=5)
               if not (info.device_id in ("l0", "l1") and env.ts_us >= T0 + 14 * 3600 * S)]
    assert not spans(run(iter(records)), Kind.CABINET_OVERCONSUMPTION)


def test_dimming_not_applied_by_a_lamp_without_cabinet() -> None:
    """No peers: the lamp's own learned nights (dimmed from 22:30) are the reference."""
    alone = lamp_info("l3", cabinet=None)
    at = 2 * DAY_S + 14 * 3600
    records = [(alone, env) for info, env in street(4.1, stays_full(at, 3 * DAY_S + 14 * 3600),
                                                     lamps=["l3"], lamp_every=10)
               if info.type == "streetlight"]
    found = run(iter(records))
    (start, stop), = spans(found, Kind.DIMMING_NOT_APPLIED)["l3"]
    dim_start = 2 * DAY_S + 21 * 3600 + 30 * 60
    assert dim_start <= start <= dim_start + 1200
    assert stop is not None and stop > 3 * DAY_S + 21 * 3600
    assert {f.kind for _, f in found} == {Kind.DIMMING_NOT_APPLIED}
    assert run(iter(records[: len(records) // 2])) == []  # two normal nights learnt: quiet


# -- cabinet ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("lamp_every", "cabinet_every", "late_min"), [(1, 1, 3), (15, 5, 30)])
def test_cabinet_overconsumption_named_on_the_cabinet(lamp_every: int, cabinet_every: int,
                                                      late_min: int) -> None:
    at = 14 * 3600
    found = run(street(1.8, cabinet_ratio=lambda s: 1.5 if s >= at and s < DAY_S + 12 * 3600
                       else 1.0, lamp_every=lamp_every, cabinet_every=cabinet_every))
    spans_ = spans(found, Kind.CABINET_OVERCONSUMPTION)
    assert set(spans_) == {"c1"}
    (start, stop), = spans_["c1"]
    first_dark = next(m for m in range(at // 60, DAY_S // 60) if dark(m)) * 60
    assert first_dark <= start <= first_dark + late_min * 60
    assert stop is not None and stop > DAY_S + 12 * 3600  # closed once lit and consistent again
    ev = next(f for _, f in found if f.kind == Kind.CABINET_OVERCONSUMPTION).evidence
    assert ev["cabinet_power_w"] > ev["threshold_w"] > ev["lamps_power_w"]
    assert ev["lamps_reporting"] == len(LAMPS)


@pytest.mark.parametrize(("own_w", "ratio", "expected"), [(0.0, 1.3, True), (12.0, 1.0, False),
                                                          (12.0, 1.3, True)])
def test_small_cabinet_against_its_own_learned_draw(own_w: float, ratio: float,
                                                   expected: bool) -> None:
    """Two 60 W lamps: a 20 W fixed margin would hide a 30 % excess; the cabinet's own draw
    (clock, modem), learned while its street is off, is not an excess."""
    records = []
    for info, env in street(1.8, lamps=LAMPS[:2], lamp_every=15, cabinet_every=5,
                            cabinet_ratio=lambda s: ratio if s >= 14 * 3600 else 1.0):
        if info.type == "lighting_cabinet":
            values = dict(env.values, active_power_w=env.values["active_power_w"] + own_w)
            info = DeviceInfo("t", "c1", "lighting_cabinet", PARIS, LAT, LON, meta={"lamps": 2})
            env = Envelope.trusted("t", "c1", "reading", env.ts_us, env.ts_us, SourceFormat.JSON,
                                   values, {})
        records.append((info, env))
    assert bool(spans(run(iter(records)), Kind.CABINET_OVERCONSUMPTION)) is expected


def test_cabinet_not_judged_until_all_its_lamps_report() -> None:
    """Meta says 5 lamps; only 4 ever report: the sum is not the cabinet's load."""
    found = run(street(1, lamps=LAMPS[:4], cabinet_ratio=lambda s: 1.4))
    assert not spans(found, Kind.CABINET_OVERCONSUMPTION)


# -- memory ----------------------------------------------------------------------------------------

def test_memory_json_round_trip_gives_the_same_findings() -> None:
    def faults(lamp: str, s: int, values: dict[str, float], attrs: dict[str, Any]) -> None:
        failing(20 * 3600, DAY_S, status="lampFailure")(lamp, s, values, attrs)
        stays_full(0, DAY_S)(lamp, s, values, attrs)

    records = list(street(1.5, faults, cabinet_ratio=lambda s: 1.6))
    straight = run(iter(records))
    memories: dict[str, Any] = {}
    cut = len(records) * 2 // 3 + 3
    first = run(iter(records[:cut]), memories)
    restored = orjson.loads(orjson.dumps(memories))
    assert restored == memories
    second = run(iter(records[cut:]), restored)
    assert first + second == straight
    assert {f.kind for _, f in straight} >= {Kind.LAMP_FAILURE, Kind.DIMMING_NOT_APPLIED,
                                             Kind.CABINET_OVERCONSUMPTION}
