"""Meter rules on synthetic streams: each fires on its condition with evidence, stays quiet on a
normal day/night cycle (warm-up included), clears, and its memory survives a JSON round trip."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from maillage.envelope import Envelope, SourceFormat
from maillage.processors.detection import meters
from maillage.processors.detection.model import DeviceInfo, Finding, Kind

T0 = 1_796_083_200_000_000  # 2026-12-01T00:00:00Z (01:00 in Paris), epoch µs
S = 1_000_000
STEP_S = 60
DAY_S = 86_400
PARIS = ZoneInfo("Europe/Paris")

Shape = Callable[[int, float], float | None]
"""(seconds since T0, normal power) -> the power to send instead (None: the normal one)."""


def device(**meta: Any) -> DeviceInfo:
    base = {"subscribed_power_va": 6000, "pv_kwc": 0.0}
    return DeviceInfo("t", "m1", "meter", PARIS, 48.11, -1.68, meta={**base, **meta})


def household_w(s: int, rng: random.Random) -> float:
    """A household: 180 W at night, an evening peak, and a few 2 kW appliance cycles a day."""
    local_h = ((s + 3600) % DAY_S) / 3600
    p = 180 + 700 * math.exp(-0.5 * ((local_h - 19.5) / 1.5) ** 2)
    p += 350 * math.exp(-0.5 * ((local_h - 7.5) / 0.8) ** 2)
    if (s // 180) % 53 == 7:  # a kettle or an oven, three minutes now and then
        p += 2000
    return p * (1 + rng.gauss(0, 0.04))


def stream(days: float, shape: Shape | None = None, *, seed: int = 1, voltage: Callable[[int], float]
           | None = None, stuck: Callable[[int], bool] | None = None,
           extra: Callable[[int], dict[str, float]] | None = None,
           step_s: int = STEP_S) -> Iterator[Envelope]:
    """A meter's readings every `step_s` from T0: index integrated from power (energy conserved)."""
    rng = random.Random(seed)
    index = 12_345_678.0
    last: dict[str, float] | None = None
    for k in range(int(days * DAY_S / step_s)):
        s = k * step_s
        p = household_w(s, rng)
        if shape is not None and (q := shape(s, p)) is not None:
            p = q
        index += p * step_s / 3600
        values = {"energy_import_wh": float(int(index)), "active_power_w": round(p, 1),
                  "apparent_power_va": round(p / 0.95, 1),
                  "voltage_v": round(voltage(s) if voltage else 231 + rng.gauss(0, 0.8), 1)}
        if extra is not None:
            values.update(extra(s))
        if stuck is not None and stuck(s) and last is not None:
            values = dict(last)  # the meter repeats its last frame
        last = values
        ts = T0 + s * S
        yield Envelope.trusted("t", "m1", "reading", ts, ts, SourceFormat.JSON, values, {})


def run(rule: Callable[..., Any], envs: Iterator[Envelope], dev: DeviceInfo | None = None,
        memory: dict[str, Any] | None = None) -> list[Finding]:
    dev = dev or device()
    memory = {} if memory is None else memory
    out: list[Finding] = []
    for env in envs:
        out.extend(rule(dev, memory, env))
    return out


def of(findings: list[Finding], kind: Kind) -> list[Finding]:
    return [f for f in findings if f.kind == kind]


def window(start_s: int, end_s: int, value: float) -> Shape:
    return lambda s, p: value if start_s <= s < end_s else None


def spans(findings: list[Finding]) -> list[tuple[int, int | None]]:
    """(start, end) in seconds since T0 of the anomalies the findings open and close."""
    out: list[tuple[int, int | None]] = []
    start: int | None = None
    for f in findings:
        if f.active and start is None:
            start = f.ts_us
        elif not f.active and start is not None:
            out.append(((start - T0) // S, (f.ts_us - T0) // S))
            start = None
    if start is not None:
        out.append(((start - T0) // S, None))
    return out


# -- quiet on normal data ------------------------------------------------------------------------

@pytest.mark.parametrize("rule", [meters.meter_rule, meters.voltage_rule])
@pytest.mark.parametrize("seed", [1, 2])
def test_quiet_on_a_normal_fortnight(rule: Callable[..., Any], seed: int) -> None:
    """Fourteen days of a normal household, warm-up included: not a single finding."""
    assert run(rule, stream(14, seed=seed)) == []


# -- spikes and over-subscription -------------------------------------------------------------------

SPIKE_AT = 2 * DAY_S + 14 * 3600


@pytest.mark.parametrize(("power", "minutes", "sub"), [
    (9000.0, 5, 12000),   # within the subscription: only the learned peak says it is a spike
    (14000.0, 3, 6000),   # beyond what a breaker carries: a spike whatever was learned
    (7000.0, 8, 6000),    # above the subscription but short and far above the peak: a spike
])
def test_spike_fires_with_evidence_and_clears(power: float, minutes: int, sub: int) -> None:
    shape = window(SPIKE_AT, SPIKE_AT + minutes * 60, power)
    findings = run(meters.meter_rule, stream(3, shape), device(subscribed_power_va=sub))
    assert spans(of(findings, Kind.SPIKE)) == [(SPIKE_AT, SPIKE_AT + minutes * 60)]
    assert not of(findings, Kind.OVER_SUBSCRIBED_POWER)
    ev = of(findings, Kind.SPIKE)[0].evidence
    assert ev["power_w"] == power and ev["threshold_w"] < power
    assert {k.kind for k in findings} == {Kind.SPIKE}


def test_spike_in_warm_up_only_beyond_the_breaker() -> None:
    """First hour of data: 9 kW on a 6 kVA meter is a spike (1.45 x In cannot be carried)."""
    findings = run(meters.meter_rule, stream(0.2, window(1800, 2100, 9000.0)))
    assert spans(of(findings, Kind.SPIKE)) == [(1800, 2100)]
    assert of(findings, Kind.SPIKE)[0].evidence["subscribed_power_va"] == 6000


@pytest.mark.parametrize("minutes", [15, 35])
def test_over_subscribed_power_after_ten_minutes(minutes: int) -> None:
    """1.25 x the subscription held past the 10-minute aggregation: over-subscribed, from its start."""
    at = 2 * DAY_S + 18 * 3600
    findings = run(meters.meter_rule, stream(3, window(at, at + minutes * 60, 6000 * 1.25 * 0.95)))
    assert spans(of(findings, Kind.OVER_SUBSCRIBED_POWER)) == [(at, at + minutes * 60)]
    assert not of(findings, Kind.SPIKE)
    opening = of(findings, Kind.OVER_SUBSCRIBED_POWER)[0]
    assert opening.evidence["subscribed_power_va"] == 6000
    assert opening.evidence["mean_apparent_power_va"] > 6000


@pytest.mark.parametrize(("minutes", "kind"), [(10, Kind.OVER_SUBSCRIBED_POWER), (8, Kind.SPIKE)])
def test_sparse_readings_judge_the_excursion_until_the_first_normal_one(minutes: int,
                                                                         kind: Kind) -> None:
    """Every 2 min, 10 minutes above the subscription hold 5 readings over 8 minutes: the
    excursion lasts until the first reading back under, so it is an over-subscription; 8
    minutes far above the meter's peak are a spike."""
    at = 2 * DAY_S + 18 * 3600 + 30
    findings = run(meters.meter_rule, stream(3, window(at, at + minutes * 60, 6000 * 1.2 * 0.95),
                                             step_s=120))
    (start, stop), = spans(findings)
    assert {f.kind for f in findings} == {kind}
    assert at <= start <= at + 120 and at + minutes * 60 <= stop <= at + minutes * 60 + 120


def test_subscription_sent_by_the_meter_wins_over_the_registry() -> None:
    at = DAY_S + 18 * 3600
    envs = stream(2, window(at, at + 20 * 60, 7000.0), extra=lambda s: {"subscribed_power_va": 9000.0})
    findings = run(meters.meter_rule, envs, device(subscribed_power_va=6000))
    assert not of(findings, Kind.OVER_SUBSCRIBED_POWER)


# -- zero, stuck -----------------------------------------------------------------------------------

def test_zero_consumption_after_an_hour_and_clears() -> None:
    at, end = DAY_S + 10 * 3600, DAY_S + 16 * 3600
    findings = run(meters.meter_rule, stream(2, window(at, end, 0.0)))
    assert spans(of(findings, Kind.ZERO_CONSUMPTION)) == [(at, end)]
    first = of(findings, Kind.ZERO_CONSUMPTION)[0]
    assert first.evidence["since_s"] >= meters.ZERO_HOLD_S
    assert {f.kind for f in findings} == {Kind.ZERO_CONSUMPTION}


def test_zero_of_a_producer_exporting_is_not_zero_consumption() -> None:
    """Midday on a PV house: nothing imported, but the export index moves."""
    at, end = DAY_S + 10 * 3600, DAY_S + 15 * 3600
    envs = stream(2, window(at, end, 0.0),
                  extra=lambda s: {"energy_export_wh": 5e5 + max(0, s - at) // 10 if s < end
                                   else 5e5 + (end - at) // 10})
    findings = run(meters.meter_rule, envs, device(pv_kwc=3.0))
    assert findings == []


def test_meter_stuck_by_energy_conservation() -> None:
    """The same frame repeated for 3 h: the index should have moved; other rules keep quiet."""
    at, end = DAY_S + 20 * 3600, DAY_S + 23 * 3600
    findings = run(meters.meter_rule, stream(2, stuck=lambda s: at <= s < end))
    assert [k for k in {f.kind for f in findings}] == [Kind.METER_STUCK]
    (start, stop), = spans(findings)
    assert at - STEP_S <= start <= at and stop == end
    ev = of(findings, Kind.METER_STUCK)[0].evidence
    assert ev["expected_advance_wh"] >= meters.STUCK_MIN_WH


# -- voltage ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("metric", "value"), [("voltage_v", 198.0), ("voltage_v", 259.0),
                                               ("voltage_l2_v", 256.0)])
def test_voltage_out_of_range_en50160(metric: str, value: float) -> None:
    at, end = 3600, 3 * 3600

    def extra(s: int) -> dict[str, float]:
        v = {"voltage_l1_v": 231.0, "voltage_l2_v": 230.0, "voltage_l3_v": 229.0}
        if at <= s < end:
            v[metric] = value
            if metric == "voltage_v":
                return {"voltage_v": value}
        return v if metric != "voltage_v" else {}

    findings = run(meters.voltage_rule, stream(0.2, extra=extra))
    assert spans(findings) == [(at, end)]
    ev = findings[0].evidence
    assert ev["voltage_v"] == value and ev["metric"] == metric
    assert (ev["low_v"], ev["high_v"]) == pytest.approx((207.0, 253.0))


def test_one_voltage_glitch_is_not_a_supply_condition() -> None:
    findings = run(meters.voltage_rule, stream(0.1, voltage=lambda s: 190.0 if s == 600 else 231.0))
    assert findings == []


# -- night, baseline, export ------------------------------------------------------------------------

def test_night_overconsumption_against_the_learned_night() -> None:
    """Three normal nights, then +2 kW from 01:30 to 04:30 local."""
    at = 3 * DAY_S + int(0.5 * 3600)  # 01:30 Paris
    end = at + 3 * 3600
    findings = run(meters.meter_rule, stream(4, lambda s, p: p + 2000 if at <= s < end else None))
    assert {f.kind for f in findings} == {Kind.NIGHT_OVERCONSUMPTION}
    (start, stop), = spans(findings)
    assert at <= start < at + 1800 and end <= stop < end + 1800
    ev = findings[0].evidence
    assert ev["level_15min_w"] > ev["threshold_w"] > ev["learned_night_w"]


@pytest.mark.parametrize("extra_w", [0.0, 2000.0])
def test_a_cold_spell_raises_the_night_it_expects(extra_w: float) -> None:
    """Electric heating: 1 kW on normal days, 1.7 kW from day 3 on (a cold spell lifts the whole
    day). The cold nights alone are not over-consumption; +2 kW on one of them still is."""
    at = 4 * DAY_S + int(0.5 * 3600)  # 01:30 Paris, the first cold night
    end = at + 3 * 3600

    def shape(s: int, p: float) -> float:
        heating = 1700.0 if s >= 3 * DAY_S + 12 * 3600 else 1000.0  # from noon on
        return p + heating + (extra_w if at <= s < end else 0.0)

    findings = run(meters.meter_rule, stream(5.5, shape), device(subscribed_power_va=9000))
    nights = spans(of(findings, Kind.NIGHT_OVERCONSUMPTION))
    assert [k.kind for k in findings if k.kind != Kind.NIGHT_OVERCONSUMPTION] == []
    if not extra_w:
        assert nights == []
    else:
        (start, stop), = nights
        assert at <= start < at + 3600 and end <= stop < end + 3600


def test_baseline_shift_needs_days() -> None:
    """Eight normal days, then a base load six times higher for four days."""
    at = 8 * DAY_S
    findings = run(meters.meter_rule, stream(12, lambda s, p: p + 1000 if s >= at else None))
    shifts = of(findings, Kind.BASELINE_SHIFT)
    assert shifts and shifts[0].active
    assert shifts[0].ts_us >= T0 + (at + 3 * DAY_S) * S
    assert shifts[0].evidence["base_load_w"] > 3 * shifts[0].evidence["learned_base_load_w"]


@pytest.mark.parametrize(("pv_kwc", "expected"), [(0.0, True), (None, True), (4.5, False)])
def test_unexpected_export(pv_kwc: float | None, expected: bool) -> None:
    at, end = 3600, 2 * 3600

    def extra(s: int) -> dict[str, float]:
        grown = min(max(0, s - at), end - at) // 6
        return {"energy_export_wh": 1000.0 + grown}

    dev = device(pv_kwc=pv_kwc) if pv_kwc is not None else DeviceInfo("t", "m1", "meter", PARIS)
    findings = run(meters.meter_rule, stream(0.25, extra=extra), dev)
    exports = of(findings, Kind.UNEXPECTED_EXPORT)
    assert bool(exports) is expected
    if expected:
        assert exports[0].active and exports[0].evidence["export_index_growth_wh"] >= 10
        assert not exports[-1].active  # an hour without export closes it


# -- memory ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", [meters.meter_rule, meters.voltage_rule])
def test_memory_json_round_trip_gives_the_same_findings(rule: Callable[..., Any]) -> None:
    """Checkpointing the memory (JSON) halfway changes nothing."""
    at = 2 * DAY_S + 14 * 3600
    envs = list(stream(3, window(at, at + 300, 14000.0), voltage=lambda s: 260.0
                       if at <= s < at + 900 else 231.0))
    straight = run(rule, iter(envs))
    memory: dict[str, Any] = {}
    first = run(rule, iter(envs[: len(envs) // 2 + 7]), memory=memory)
    restored = orjson.loads(orjson.dumps(memory))
    assert restored == memory
    second = run(rule, iter(envs[len(envs) // 2 + 7:]), memory=restored)
    assert first + second == straight and straight
