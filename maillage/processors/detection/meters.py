"""Electricity meter rules: spikes, night over-consumption, zero or stuck meters, voltage
(EN 50160), over-subscribed power, baseline shifts and export from a non-producer.

One `meter_rule` reads every meter record once (a few dict lookups and comparisons) and keeps a
small learned profile per meter: 48 half-hour EWMA buckets of the mean power and of its day-to-day
deviation, a decaying peak, and the daily base load. Thresholds come from physics and standards
(EN 50160 voltage band, a breaker's conventional tripping current, energy conservation between
power and index), the registry (`meta.subscribed_power_va`, `meta.pv_kwc`) or what the meter itself
has shown after a day of warm-up. Nothing here reads a label or the wall clock.

Longer than the ~400 lines modules keep to, on purpose: the seven meter kinds share one profile
and one pass over each record (the cost of a reading is the hot path's), so they stay together.

Power is `active_power_w`, else `apparent_power_va` (TIC frames carry only the latter). An
excursion above the subscribed power is told apart from a spike by its length: judged on the
10-minute aggregation of IEC 61000-4-30 / EN 50160, a load above the subscription for 10 minutes
is an over-subscription; a shorter one far above the meter's own peak is a spike. Findings of
an excursion carry the time it began (`ts_us` may precede the record's time).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from maillage.envelope import Envelope
from maillage.processors.detection.model import DeviceInfo, Finding, Kind, Memory, Rule

log = logging.getLogger(__name__)

US = 1_000_000
NOMINAL_V = 230.0
V_LOW, V_HIGH = NOMINAL_V * 0.9, NOMINAL_V * 1.1  # EN 50160: Un ±10 %
VOLTAGES = ("voltage_v", "voltage_l1_v", "voltage_l2_v", "voltage_l3_v")
BREAKER_TRIP = 1.45  # IEC 60898 conventional tripping current I2 = 1.45 In: no sustained load above
AGGREGATION_S = 600  # IEC 61000-4-30 / EN 50160 10-minute aggregation interval
SPIKE_FACTOR = 1.4  # far above the meter's own learned peak...
APPLIANCE_W = 2_500.0  # ...and more than one large appliance (kettle, oven: 2-3 kW) above it
WARMUP_S = 86_400  # a full day before learned levels are trusted
PEAK_TAU_S = 30 * 86_400  # the learned peak forgets in about a month
NIGHT_BUCKETS = frozenset({46, 47, *range(12)})  # 23:00-06:00 local, half-hour buckets
NIGHT_MIN_W = 600.0  # a colder night draws a few hundred W more on electric heating
NIGHT_HOLD_S = 1_800  # night excess sustained this long (appliance cycles are minutes)
LEVEL_TAU_S = 900.0  # short-term level: 15-minute EWMA
WEATHER_TAU_S = 6 * 3600.0  # today's level against the learned profile, over the evening
BUCKET_ALPHA = 0.25  # half-hour profile: about four nights of memory
ZERO_HOLD_S = 3_600  # no consumption for an hour while the meter normally consumes
STUCK_MIN_WH = 20.0  # the index should have moved 20 resolution steps (1 Wh)
STUCK_MIN_S = 900
BASE_DAYS = 3  # baseline shift: three full days in a row
BASE_FACTOR = 4.0  # weather moves an electrically heated base load up to ~3x over a winter month
BASE_MIN_W = 800.0
BASE_LEARN_DAYS = 7
EXPORT_MIN_WH = 10.0
EXPORT_MIN_VA = 50.0
EXPORT_CLEAR_S = 3_600


@lru_cache(maxsize=8192)
def _offset_s(tz: ZoneInfo, hour: int) -> int:
    """UTC offset (seconds) of `tz` during the epoch hour `hour`."""
    off = datetime.fromtimestamp(hour * 3600, tz).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def local_seconds(tz: ZoneInfo, ts_us: int) -> int:
    """Local wall-clock seconds since the epoch (no datetime per record: cached per hour)."""
    s = ts_us // US
    return s + _offset_s(tz, s // 3600)


def _score(value: float, threshold: float) -> float:
    """How far past its threshold a value is, in [0.5, 1] (0.5 at the threshold, 1 at twice it)."""
    if threshold <= 0:
        return 1.0
    return max(0.5, min(1.0, 0.5 + 0.5 * (value / threshold - 1.0)))


def power_of(values: dict[str, float]) -> float | None:
    """The meter's import power: active when sent, else apparent (TIC)."""
    p = values.get("active_power_w")
    return values.get("apparent_power_va") if p is None else p


def voltage_rule(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """Supply voltage outside 230 V ±10 % (EN 50160) on two readings in a row, any phase."""
    if env.kind != "reading":
        return ()
    values = env.values
    m = memory.get("volt")
    u = values.get("voltage_v")
    if (u is not None and V_LOW <= u <= V_HIGH and "voltage_l1_v" not in values
            and (m is None or (not m["open"] and m["run"] == 0))):
        return ()  # the common case: one phase, in range, nothing pending
    worst: tuple[float, str] | None = None
    for name in VOLTAGES:
        u = values.get(name)
        if u is not None and u > 0 and (worst is None
                                        or abs(u - NOMINAL_V) > abs(worst[0] - NOMINAL_V)):
            worst = (u, name)
    if worst is None:
        return ()
    u, name = worst
    if m is None:
        m = memory["volt"] = {"open": False, "run": 0, "start": 0}
    out_of_range = u < V_LOW or u > V_HIGH
    ts = env.ts_us
    if out_of_range != m["open"]:
        if m["run"] == 0:
            m["start"] = ts
        m["run"] += 1
        if m["run"] < 2:  # one sample is not a supply condition
            return ()
        m["open"], m["run"] = out_of_range, 0
        if not out_of_range:
            return (Finding(Kind.VOLTAGE_OUT_OF_RANGE, False, m["start"]),)
        at = m["start"]  # the anomaly began with the first of the two readings
    else:
        m["run"] = 0
        if not out_of_range:
            return ()
        at = ts
    bound = V_LOW if u < V_LOW else V_HIGH
    return (Finding(Kind.VOLTAGE_OUT_OF_RANGE, True, at,
                    score=_score(abs(u - NOMINAL_V), abs(bound - NOMINAL_V)),
                    evidence={"voltage_v": u, "metric": name, "low_v": V_LOW, "high_v": V_HIGH,
                              "nominal_v": NOMINAL_V, "standard": "EN 50160"}),)


def _new_state() -> dict[str, Any]:
    return {"t0": None, "t": None, "p": None, "i": None, "e": None, "mx": 0.0, "lvl": None,
            "hm": [None] * 48, "hd": [None] * 48, "hb": None, "hs": 0.0, "hn": 0,
            "off": [0, 0], "x": None, "zs": None, "zc": False, "zo": False, "sk": None, "so": False,
            "ns": None, "no": False, "day": None, "dmin": None, "dn": 0, "bd": [], "bl": None,
            "bn": 0, "bo": None, "ex": None, "eo": False, "el": 0, "wf": 1.0}


def meter_rule(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """Every meter kind but voltage, from one pass over the record (helpers only off the common
    path: this runs for every meter reading)."""
    if env.kind != "reading":
        return ()
    m = memory.get("meter")
    if m is None:
        m = memory["meter"] = _new_state()
    values = env.values
    ts = env.ts_us
    t = ts / US
    p = values.get("active_power_w")
    if p is None:
        p = values.get("apparent_power_va")
    idx = values.get("energy_import_wh")
    out: list[Finding] = []
    prev_t, prev_p, prev_i = m["t"], m["p"], m["i"]
    if prev_t is not None and t < prev_t:
        return ()  # an out-of-order record let through by the engine's lateness: no state
    if prev_t is None:
        m["t0"] = prev_t = t
    dt = t - prev_t
    frozen = False
    if prev_i is not None and idx == prev_i and p is not None and p > 0.0:
        frozen = _stuck(m, out, ts, dt, p, idx, prev_p)
    elif m["sk"] is not None:
        if m["so"]:
            out.append(Finding(Kind.METER_STUCK, False, ts))
        m["sk"], m["so"] = None, False
    exp_idx = values.get("energy_export_wh")
    exporting = ((exp_idx is not None and m["e"] is not None and exp_idx > m["e"])
                 or values.get("apparent_power_export_va", 0.0) > EXPORT_MIN_VA
                 or (p is not None and p < -EXPORT_MIN_VA))
    if exporting or m["ex"] is not None:
        _export(device, m, out, ts, t, values, exp_idx, exporting)
    if p is not None and not frozen:
        va = values.get("apparent_power_va", p)
        sub = values.get("subscribed_power_va") or device.meta.get("subscribed_power_va") or 0.0
        x = m["x"]
        mx = m["mx"]
        if (x is not None or (sub and va > sub)
                or (mx > 0.0 and p > mx + APPLIANCE_W and p > SPIKE_FACTOR * mx
                    and t - m["t0"] >= WARMUP_S)):
            in_excursion = _excursion(m, out, ts, t, p, va, float(sub))
        else:
            in_excursion = False
            # The learned peak, with a slow decay so a month-old peak no longer counts in full.
            m["mx"] = p if p > mx else mx - mx * dt / PEAK_TAU_S
        if p <= 1.0 or m["zs"] is not None:
            _zero(m, out, ts, p, idx, prev_i, prev_p, exporting)
        if not in_excursion and p > 1.0:
            off = m["off"]
            if ts >= off[1]:  # the UTC offset is cached until the end of the hour
                off = m["off"] = _offset_until(device.tz, ts)
            ls = ts // US + off[0]
            lvl = m["lvl"]
            lvl = m["lvl"] = p if lvl is None else lvl + dt / (LEVEL_TAU_S + dt) * (p - lvl)
            b = (ls % 86_400) // 1800
            if m["ns"] is None and (usual := m["hm"][b]):
                # How far above its usual profile the meter runs today (weather, occupancy):
                # a cold evening raises the night it announces; a 6-hour EWMA of the ratio.
                r = min(3.0, lvl / usual) if usual > 50.0 else 1.0
                m["wf"] += dt / (WEATHER_TAU_S + dt) * (r - m["wf"])
            if b in NIGHT_BUCKETS or m["ns"] is not None:
                _night(m, out, ts, lvl, ls)
            if m["ns"] is None:  # a night excess, pending or open, is not learned
                bucket = ls // 1800
                if m["hb"] != bucket:
                    _next_bucket(m, bucket)
                m["hs"] += p
                m["hn"] += 1
    m["t"], m["p"], m["i"] = t, p, idx
    if exp_idx is not None:
        m["e"] = exp_idx
    if m["bo"] is not None:
        _baseline(m, out, ts)
    return out


def _offset_until(tz: ZoneInfo, ts_us: int) -> list[int]:
    """[UTC offset s, end of its epoch hour in µs]."""
    hour = ts_us // (3600 * US)
    return [_offset_s(tz, hour), (hour + 1) * 3600 * US]


def _stuck(m: dict[str, Any], out: list[Finding], ts: int, dt: float, p: float, idx: float,
           prev_p: float | None) -> bool:
    """Index still while the reported power says it must move (energy conservation).

    Called when the index did not move and power is positive; returns True when the record
    repeats the previous one (its values cannot be trusted by the other rules)."""
    sk = m["sk"]
    if sk is None:
        sk = m["sk"] = [ts - int(dt * US), 0.0]
    sk[1] += (prev_p or 0.0) * dt / 3600.0
    at = ts
    if not m["so"] and sk[1] >= STUCK_MIN_WH and (ts - sk[0]) >= STUCK_MIN_S * US:
        m["so"], at = True, sk[0]
    if m["so"]:
        out.append(Finding(Kind.METER_STUCK, True, at, score=_score(sk[1], STUCK_MIN_WH),
                           evidence={"index_wh": idx, "power_w": p, "expected_advance_wh":
                                     round(sk[1], 1), "threshold_wh": STUCK_MIN_WH,
                                     "since_s": round((ts - sk[0]) / US)}))
    return p == prev_p


def _export(device: DeviceInfo, m: dict[str, Any], out: list[Finding], ts: int, t: float,
            values: dict[str, float], exp_idx: float | None, exporting: bool) -> None:
    """Energy flowing out of a meter that the registry does not list as a producer."""
    if device.meta.get("pv_kwc") or device.meta.get("producer"):
        return
    export_va = values.get("apparent_power_export_va", 0.0)
    active = values.get("active_power_w", 0.0)
    if exporting:
        if m["ex"] is None:
            m["ex"] = [ts, m["e"] if m["e"] is not None else exp_idx]
        m["el"] = t
        grown = (exp_idx or 0.0) - (m["ex"][1] or exp_idx or 0.0)
        at = ts
        if not m["eo"] and (grown >= EXPORT_MIN_WH or export_va > EXPORT_MIN_VA
                            or active < -EXPORT_MIN_VA):
            m["eo"], at = True, m["ex"][0]
        if m["eo"]:
            out.append(Finding(Kind.UNEXPECTED_EXPORT, True, at, evidence={
                "export_index_growth_wh": round(grown, 1), "export_power_va": export_va,
                "active_power_w": active, "pv_kwc": device.meta.get("pv_kwc", 0),
                "threshold_wh": EXPORT_MIN_WH, "threshold_va": EXPORT_MIN_VA}))
    elif t - m["el"] >= EXPORT_CLEAR_S:
        if m["eo"]:
            out.append(Finding(Kind.UNEXPECTED_EXPORT, False, ts))
        m["ex"], m["eo"] = None, False


def _excursion(m: dict[str, Any], out: list[Finding], ts: int, t: float, p: float, va: float,
               sub: float) -> bool:
    """Spikes and over-subscription; True while the record is part of an excursion."""
    ratio = va / sub if sub > 0 else 0.0
    learned = m["mx"] > 0 and t - m["t0"] >= WARMUP_S
    threshold = spike_threshold(m["mx"]) if learned else 0.0
    far = learned and p > threshold
    over = ratio > 1.0
    trip = ratio > BREAKER_TRIP
    x = m["x"]
    if not (far or over or trip):
        if x is not None:
            if x["k"] is not None:
                out.append(Finding(Kind(x["k"]), False, ts))
            elif x["ov"] and ts - x["s"] >= AGGREGATION_S * US:
                # Above the subscription from its first reading until this one, 10 minutes or
                # more (sparse readings may hold fewer than 10 minutes between them).
                out.append(_over(x, x["s"], x["last_va"]))
                out.append(Finding(Kind.OVER_SUBSCRIBED_POWER, False, ts))
            elif x["far"]:  # a short excursion far above the meter's peak: a spike
                out.append(_spike(x, x["s"]))
                out.append(Finding(Kind.SPIKE, False, ts))
            m["x"] = None
        m["mx"] = max(p, m["mx"])
        return False
    if x is None:
        x = m["x"] = {"s": ts, "k": None, "far": False, "pk": 0.0, "pr": 0.0, "sum": 0.0,
                      "n": 0, "thr": threshold, "sub": sub, "mx": m["mx"], "ov": False,
                      "last_va": va}
    x["far"] = x["far"] or far
    x["ov"] = x["ov"] or (over and not trip)
    x["last_va"] = va
    x["pk"] = max(x["pk"], p)
    x["pr"] = max(x["pr"], ratio)
    x["sum"] += va
    x["n"] += 1
    at = ts
    if x["k"] is None:
        if trip or (far and not over):
            x["k"], at = Kind.SPIKE.value, x["s"]
        elif over and ts - x["s"] >= AGGREGATION_S * US:
            x["k"], at = Kind.OVER_SUBSCRIBED_POWER.value, x["s"]
    if x["k"] == Kind.SPIKE.value:
        out.append(_spike(x, at))
    elif x["k"] is not None:
        out.append(_over(x, at, va))
    return True


def _over(x: dict[str, Any], at: int, va: float) -> Finding:
    """The over-subscription finding of an excursion."""
    mean = x["sum"] / x["n"]
    return Finding(Kind.OVER_SUBSCRIBED_POWER, True, at, score=_score(mean, x["sub"]), evidence={
        "apparent_power_va": va, "mean_apparent_power_va": round(mean, 1),
        "subscribed_power_va": x["sub"], "peak_ratio": round(x["pr"], 3),
        "window_s": AGGREGATION_S})


def spike_threshold(peak: float) -> float:
    """Power far above a learned peak: a household may add one more appliance, not a spike."""
    return max(SPIKE_FACTOR * peak, peak + APPLIANCE_W)


def _spike(x: dict[str, Any], start: int) -> Finding:
    """The spike finding of an excursion."""
    thr = x["thr"] or BREAKER_TRIP * x["sub"]
    return Finding(Kind.SPIKE, True, start, score=_score(x["pk"], thr), evidence={
        "power_w": x["pk"], "learned_peak_w": round(x["mx"], 1) if x["thr"] else None,
        "threshold_w": round(thr, 1), "subscribed_power_va": x["sub"] or None,
        "peak_subscribed_ratio": round(x["pr"], 3) if x["sub"] else None})


def _zero(m: dict[str, Any], out: list[Finding], ts: int, p: float, idx: float | None,
          prev_i: float | None, prev_p: float | None, exporting: bool) -> None:
    """No consumption (power zero, index still, nothing exported) for an hour, on a meter that
    was consuming before."""
    zero = p <= 1.0 and not exporting and (idx is None or prev_i is None or idx == prev_i)
    if not zero:
        if m["zo"]:
            out.append(Finding(Kind.ZERO_CONSUMPTION, False, ts))
        m["zs"], m["zo"] = None, False
        return
    if m["zs"] is None:
        m["zs"], m["zc"] = ts, prev_p is not None and prev_p > 1.0
    at = ts
    if not m["zo"] and m["zc"] and ts - m["zs"] >= ZERO_HOLD_S * US:
        m["zo"], at = True, m["zs"]
    if m["zo"]:
        out.append(Finding(Kind.ZERO_CONSUMPTION, True, at, evidence={
            "power_w": p, "index_wh": idx, "since_s": round((ts - m["zs"]) / US),
            "threshold_s": ZERO_HOLD_S}))


def _night(m: dict[str, Any], out: list[Finding], ts: int, lvl: float, ls: int) -> None:
    """Night consumption sustained above the meter's own learned night profile."""
    b = (ls % 86_400) // 1800
    if b not in NIGHT_BUCKETS:
        if m["no"]:
            out.append(Finding(Kind.NIGHT_OVERCONSUMPTION, False, ts))
        m["ns"], m["no"] = None, False
        return
    hm, hd = m["hm"], m["hd"]
    refs = [hm[k % 48] for k in (b - 1, b, b + 1)]
    if None in refs:
        return
    ref = max(refs) * max(1.0, m["wf"])
    dev = max(hd[k % 48] for k in (b - 1, b, b + 1))
    margin = max(3.0 * dev, 0.3 * ref, NIGHT_MIN_W)
    above = lvl > ref + (margin / 2 if m["no"] else margin)  # hysteresis once open
    if not above:
        if m["no"]:
            out.append(Finding(Kind.NIGHT_OVERCONSUMPTION, False, ts))
        m["ns"], m["no"] = None, False
        return
    if m["ns"] is None:
        m["ns"] = ts
    at = ts
    if not m["no"] and ts - m["ns"] >= NIGHT_HOLD_S * US:
        m["no"], at = True, m["ns"]
    if m["no"]:
        out.append(Finding(Kind.NIGHT_OVERCONSUMPTION, True, at,
                           score=_score(lvl, ref + margin), evidence={
                               "level_15min_w": round(lvl, 1), "learned_night_w": round(ref, 1),
                               "threshold_w": round(ref + margin, 1)}))


def _next_bucket(m: dict[str, Any], bucket: int) -> None:
    """Close the running half-hour (if it holds enough readings) and start `bucket`."""
    if m["hb"] is not None and m["hn"] >= 2:
        _fold(m, m["hb"], m["hs"] / m["hn"])
    m["hb"], m["hs"], m["hn"] = bucket, 0.0, 0


def _fold(m: dict[str, Any], bucket: int, mean: float) -> None:
    """A finished half-hour: update its EWMA bucket and the day's base load."""
    k = bucket % 48
    hm, hd = m["hm"], m["hd"]
    if hm[k] is None:
        hm[k], hd[k] = mean, 0.15 * mean + 50.0
    else:
        hd[k] += BUCKET_ALPHA * (abs(mean - hm[k]) - hd[k])
        hm[k] += BUCKET_ALPHA * (mean - hm[k])
    day = bucket // 48
    if m["day"] != day:
        if m["day"] is not None and m["dn"] >= 24:
            _day_base(m, m["dmin"])
        m["day"], m["dmin"], m["dn"] = day, mean, 0
    m["dmin"] = min(m["dmin"], mean)
    m["dn"] += 1


def _day_base(m: dict[str, Any], base: float) -> None:
    """A finished day's base load against the learned baseline (checked at the next reading)."""
    bd = m["bd"]
    bd.append(base)
    del bd[:-BASE_DAYS]
    bl = m["bl"]
    if bl is None:
        m["bl"], m["bn"] = base, 1
        return
    shifted = [b for b in bd if _shifted(b, bl)]
    if m["bn"] >= BASE_LEARN_DAYS and len(shifted) == BASE_DAYS and m["bo"] is None:
        m["bo"] = {"since": 0, "base": bd[-1], "learned": bl}
    elif m["bo"] is not None:
        m["bo"]["since"] += 1
        m["bo"]["base"] = base
        if not _shifted(base, bl) or m["bo"]["since"] >= BASE_LEARN_DAYS:
            m["bo"] = {"close": True}
            m["bl"] = base  # the new level is the baseline now
    elif not _shifted(base, bl):  # a shifted day waits for its two successors, unlearned
        m["bl"] = bl + 0.15 * (base - bl)
        m["bn"] += 1


def _shifted(base: float, learned: float) -> bool:
    return (abs(base - learned) >= BASE_MIN_W
            and (base > BASE_FACTOR * learned or base * BASE_FACTOR < learned))


def _baseline(m: dict[str, Any], out: list[Finding], ts: int) -> None:
    """Report the baseline shift `_day_base` found at the last day boundary."""
    bo = m["bo"]
    if bo.get("close"):
        m["bo"] = None
        out.append(Finding(Kind.BASELINE_SHIFT, False, ts))
        return
    if "start" not in bo:
        bo["start"] = ts
    out.append(Finding(Kind.BASELINE_SHIFT, True, bo["start"], score=_score(
        max(bo["base"], bo["learned"]), BASE_FACTOR * min(bo["base"], bo["learned"])), evidence={
        "base_load_w": round(bo["base"], 1), "learned_base_load_w": round(bo["learned"], 1),
        "factor": BASE_FACTOR, "min_change_w": BASE_MIN_W, "days": BASE_DAYS}))


RULES: dict[str, list[Rule]] = {
    "meter": [meter_rule, voltage_rule],
    "lighting_cabinet": [voltage_rule],
}
GROUP_RULES: dict[str, list[Rule]] = {}
