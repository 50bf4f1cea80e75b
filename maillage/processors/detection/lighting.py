"""Public lighting rules: lamp failure, day burner, dimming not applied, cabinet over-consumption,
abnormal burning hours.

Per lamp (`RULES`): what the lamp says of itself, and the sun at its position (astral, cached per
position and local day; a lamp may burn through civil twilight, so "day" starts a civil-twilight
length after sunrise and ends as long before sunset). Per cabinet (`GROUP_RULES`, memory shared by
a cabinet and its streetlights): the lamps' last power and level, kept as running sums and counts
so a record costs a few dict operations, against which the cabinet's metered power and each
lamp's level are judged. A fault is closed on positive evidence only (a lamp seen lit and sound,
dimmed, or a cabinet lit and consistent): a lamp that is off by day proves nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from astral import Observer
from astral.sun import dusk, sunrise, sunset

from maillage.envelope import Envelope
from maillage.processors.detection.meters import US, local_seconds
from maillage.processors.detection.model import DeviceInfo, Finding, Kind, Memory, Rule, Severity

log = logging.getLogger(__name__)

DAY_BURNER_HOLD_S = 1_800  # lit in full daylight this long (clock errors and tests are shorter)
FAILURE_RUN = 2  # readings "lit without power" before a failure (a status says it at once)
DIM_HOLD_S = 600  # full level while the cabinet's other lamps are dimmed, this long
DIM_MIN_PEERS = 2
OWN_DIM_SHARE = 0.8  # a lamp alone: dimmed at this half-hour on most past nights...
OWN_DIM_ALPHA = 0.3
OWN_DIM_HOLD_S = 1_800  # ...yet at full level for half an hour
CABINET_MARGIN = 0.2  # cable losses (a few %, NF C 17-200 allows 3-5 % drop) and metering error
CABINET_MARGIN_W = 5.0  # metering resolution; the cabinet's own draw is learned by day
CABINET_HOLD_S = 300
CABINET_RUN = 3
STALE_CAP_US = 3_600 * US  # lamps reporting less often than hourly do not delay the cabinet rule
BURN_WINDOW_S = 86_400
BURN_SLACK_H = 2.0  # a day's growth may exceed the day by this much (clock corrections)
# Rated life (h) per lamp technology, upper end of manufacturers' figures (B50 / L70).
RATED_LIFE_H = {"LED": 100_000.0, "HPS": 32_000.0, "SON": 32_000.0, "MH": 20_000.0,
                "CMH": 20_000.0, "HG": 24_000.0, "MV": 24_000.0, "LPS": 18_000.0,
                "CFL": 20_000.0, "FLUO": 20_000.0}


@lru_cache(maxsize=16_384)
def day_window(lat: float, lon: float, ordinal: int) -> tuple[int, int] | None:
    """(start, end) epoch seconds of full daylight on a local day at a position; None if none."""
    obs = Observer(latitude=lat, longitude=lon)
    day = date.fromordinal(ordinal)
    try:
        rise, down = sunrise(obs, day, tzinfo=UTC), sunset(obs, day, tzinfo=UTC)
        margin = dusk(obs, day, tzinfo=UTC) - down  # civil twilight: sun 0..6 degrees below
    except ValueError:  # polar night or day
        return None
    start, end = int((rise + margin).timestamp()), int((down - margin).timestamp())
    return (start, end) if start < end else None


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def day_of(device: DeviceInfo, ts_us: int) -> list[int]:
    """[from µs, to µs, daylight start s, daylight end s] of the local day holding `ts_us` (to be
    cached in memory: the sun is looked up once per lamp and day); daylight -1, -1 if none."""
    ls = local_seconds(device.tz, ts_us)
    s = ts_us // US
    midnight = s - ls % 86_400  # a DST change mid-day shifts this an hour: harmless for daylight
    w = None
    if device.lat is not None and device.lon is not None:
        w = day_window(round(device.lat, 2), round(device.lon, 2), ls // 86_400 + _EPOCH_ORDINAL)
    start, end = w if w is not None else (-1, -1)
    return [midnight * US, (midnight + 86_400) * US, start, end]


def _iso(s: int) -> str:
    return datetime.fromtimestamp(s, UTC).isoformat().replace("+00:00", "Z")


def lamp_rule(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """Failure, day burner and burning hours of one streetlight."""
    if env.kind != "reading":
        return ()
    m = memory.get("lamp")
    if m is None:
        m = memory["lamp"] = {"fr": 0, "fs": 0, "fo": False, "ds": None, "do": False, "bt": None,
                              "bh": None, "bo": False, "bw": None, "day": [0, 0, -1, -1]}
    v = env.values
    ts = env.ts_us
    status = env.attrs.get("status")
    power = v.get("lamp_power_w")
    on_flag = v.get("lamp_on")
    lit = (power or 0.0) > 0.0 or (on_flag == 1.0 and power is None)
    out: list[Finding] = []
    _failure(m, out, ts, status, on_flag, power, lit)
    _day_burner(device, m, out, ts, lit, power)
    hours = v.get("burning_hours_h")
    if hours is not None:
        _burning(device, m, out, ts, hours)
    if not device.meta.get("cabinet") and lit:  # no peers to compare with: its own nights
        _own_dimming(device, m, out, ts, v, status)
    return out


def _own_dimming(device: DeviceInfo, m: dict[str, Any], out: list[Finding], ts: int,
                 v: dict[str, float], status: Any) -> None:
    """A lamp without a cabinet left at full level where its own past nights were dimmed."""
    dm = m.get("dm")
    if dm is None:
        dm = m["dm"] = [None] * 48
    b = (local_seconds(device.tz, ts) % 86_400) // 1800
    level = v.get("dimming_pct", 100.0)
    full = level >= 100.0 or status == "dimmingFailure"
    usual = dm[b]
    ox = m.get("ox")
    if full and usual is not None and usual >= OWN_DIM_SHARE:
        if ox is None:
            ox = m["ox"] = [ts, False, 0]
        ox[2] += 1
        at = ts
        if not ox[1] and ox[2] >= 2 and ts - ox[0] >= OWN_DIM_HOLD_S * US:
            ox[1], at = True, ox[0]
        if ox[1]:
            out.append(Finding(Kind.DIMMING_NOT_APPLIED, True, at, evidence={
                "dimming_pct": level, "learned_dimmed_share": round(usual, 3),
                "hold_s": OWN_DIM_HOLD_S}))
        return
    if ox is not None:
        if ox[1] and not full:
            out.append(Finding(Kind.DIMMING_NOT_APPLIED, False, ts))
        if not ox[1] or not full:
            m["ox"] = None
        return
    dim = 1.0 if 0.0 < level < 100.0 else 0.0
    dm[b] = dim if usual is None else usual + OWN_DIM_ALPHA * (dim - usual)


def _failure(m: dict[str, Any], out: list[Finding], ts: int, status: Any, on_flag: float | None,
             power: float | None, lit: bool) -> None:
    """Status `lampFailure`, or switched on without drawing power."""
    unpowered = on_flag == 1.0 and power is not None and power <= 0.5
    if status == "lampFailure" or unpowered:
        if m["fr"] == 0:
            m["fs"] = ts
        m["fr"] += 1
        if m["fo"] or status == "lampFailure" or m["fr"] >= FAILURE_RUN:
            at = ts if m["fo"] else m["fs"]
            m["fo"] = True
            out.append(Finding(Kind.LAMP_FAILURE, True, at, evidence={
                "status": status, "lamp_on": on_flag, "lamp_power_w": power}))
        return
    m["fr"] = 0
    if m["fo"] and lit and status in (None, "ok"):  # seen lit and sound again
        m["fo"] = False
        out.append(Finding(Kind.LAMP_FAILURE, False, ts))


def _day_burner(device: DeviceInfo, m: dict[str, Any], out: list[Finding], ts: int, lit: bool,
                power: float | None) -> None:
    """Lit in full daylight for half an hour."""
    day = m["day"]
    if not day[0] <= ts < day[1]:
        day = m["day"] = day_of(device, ts)
    window = (day[2], day[3]) if day[2] * US <= ts < day[3] * US else None
    if window is None:
        if not lit and not m["do"]:
            m["ds"] = None
        if m["do"] and lit:
            out.append(_burner(m, window, power, ts))
        return
    if not lit:
        if m["do"]:
            out.append(Finding(Kind.DAY_BURNER, False, ts))
        m["ds"], m["do"] = None, False
        return
    if m["ds"] is None:
        m["ds"] = ts
    at = ts
    if not m["do"] and ts - max(m["ds"], window[0] * US) >= DAY_BURNER_HOLD_S * US:
        m["do"] = True
        m["ds"] = at = max(m["ds"], window[0] * US)
    if m["do"]:
        out.append(_burner(m, window, power, at))


def _burner(m: dict[str, Any], window: tuple[int, int] | None, power: float | None,
            at: int) -> Finding:
    ev: dict[str, Any] = {"lamp_power_w": power, "lit_in_daylight_since": _iso(m["ds"] // US)}
    if window is not None:
        ev.update(daylight_from=_iso(window[0]), daylight_to=_iso(window[1]),
                  hold_s=DAY_BURNER_HOLD_S)
    return Finding(Kind.DAY_BURNER, True, at, evidence=ev)


def _burning(device: DeviceInfo, m: dict[str, Any], out: list[Finding], ts: int,
             hours: float) -> None:
    """Burning hours beyond the technology's rated life, or counting faster than time runs."""
    tech = str(device.meta.get("lamp_tech") or "").upper() or None
    rated = device.meta.get("rated_life_h") or RATED_LIFE_H.get(tech or "")
    t = ts // US
    if m["bt"] is None or hours < m["bh"]:  # first sight, or a new lamp (counter reset)
        m["bt"], m["bh"], m["bw"] = t, hours, None
    elif t - m["bt"] >= BURN_WINDOW_S:
        grown, span_h = hours - m["bh"], (t - m["bt"]) / 3600
        m["bw"] = [round(grown, 3), round(span_h, 3)] if grown > span_h + BURN_SLACK_H else None
        m["bt"], m["bh"] = t, hours
    worn = rated is not None and hours > float(rated)
    if worn or m["bw"] is not None:
        m["bo"] = True
        ev: dict[str, Any] = {"burning_hours_h": hours, "lamp_tech": tech, "rated_life_h": rated}
        if m["bw"] is not None:
            ev.update(grown_h=m["bw"][0], over_h=m["bw"][1], slack_h=BURN_SLACK_H)
        score = min(1.0, hours / float(rated)) if worn and rated else 0.5
        out.append(Finding(Kind.BURNING_HOURS, True, ts, Severity.INFO, score, ev))
    elif m["bo"]:
        m["bo"] = False
        out.append(Finding(Kind.BURNING_HOURS, False, ts, Severity.INFO))


def _lamp_level(v: dict[str, float]) -> str:
    """`off`, `dim` (lit below full level) or `full`."""
    power = v.get("lamp_power_w")
    lit = (power or 0.0) > 0.0 if power is not None else v.get("lamp_on") == 1.0
    if not lit:
        return "off"
    level = v.get("dimming_pct", 100.0)
    return "dim" if 0.0 < level < 100.0 else "full"


def cabinet_rule(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """A cabinet and its lamps: metered power against the lamps', and lamps left at full level."""
    if env.kind != "reading":
        return ()
    g = memory.get("cab")
    if g is None:
        g = memory["cab"] = {"pw": {}, "sum": 0.0, "lv": {}, "n": {"off": 0, "dim": 0, "full": 0},
                             "dx": {}, "cr": 0, "cs": 0, "co": False, "ok": 0, "lt": {},
                             "lc": 0, "gap": 0, "cp": None, "now": 0}
    if device.type == "lighting_cabinet":
        return _cabinet(device, g, env)
    v = env.values
    lamp = device.device_id
    power = v.get("lamp_power_w")
    ts = env.ts_us
    if power is not None:
        old_power = g["pw"].get(lamp)
        if old_power is None or abs(power - old_power) > max(2.0, 0.05 * old_power):
            g["lc"] = ts  # the street is switching: the sum is stale until every lamp reported
        g["sum"] += power - (old_power or 0.0)
        g["pw"][lamp] = power
        last = g["lt"].get(lamp)
        if last is not None and 0 < ts - last <= STALE_CAP_US:
            g["gap"] = max(g["gap"], ts - last)  # the longest reporting interval of a lamp
        g["lt"][lamp] = ts
    behind = _behind(g, ts)
    if not behind:
        g["now"] = max(g.get("now", 0), ts)
    level = _lamp_level(v)
    old = g["lv"].get(lamp)
    if old != level:
        if old is not None:
            g["n"][old] -= 1
        g["n"][level] += 1
        g["lv"][lamp] = level
    return [] if behind else _dimming(g, lamp, level, env)


def _behind(g: dict[str, Any], ts: int) -> bool:
    """Held-back data: most of the group has reported later than this record (the median, so
    one lamp whose clock runs ahead does not make the others look late)."""
    if ts >= g.get("now", 0) - g["gap"]:
        return False
    times = sorted(g["lt"].values())
    return bool(times) and ts < times[len(times) // 2] - g["gap"]


def _dimming(g: dict[str, Any], lamp: str, level: str, env: Envelope) -> list[Finding]:
    """A lamp at full level while most of its lit peers are dimmed (or it says it failed to dim)."""
    ts = env.ts_us
    dx = g["dx"].get(lamp)
    dimmed, full = g["n"]["dim"], g["n"]["full"] - (level == "full")
    peers_dimmed = dimmed >= DIM_MIN_PEERS and dimmed > full
    failed = env.attrs.get("status") == "dimmingFailure"
    if (level == "full" and peers_dimmed) or failed:
        if dx is None:
            dx = g["dx"][lamp] = [ts, False]
        at = ts
        if not dx[1] and (failed or ts - dx[0] >= DIM_HOLD_S * US):
            dx[1], at = True, dx[0]
        if dx[1]:
            return [Finding(Kind.DIMMING_NOT_APPLIED, True, at, device_id=lamp, evidence={
                "dimming_pct": env.values.get("dimming_pct"), "status": env.attrs.get("status"),
                "peers_dimmed": dimmed, "peers_full": full, "hold_s": DIM_HOLD_S})]
        return []
    if dx is None:
        return []
    if not dx[1]:
        del g["dx"][lamp]
        return []
    if level == "dim":  # it dims again: the order is applied
        del g["dx"][lamp]
        return [Finding(Kind.DIMMING_NOT_APPLIED, False, ts, device_id=lamp)]
    return []


def _cabinet(device: DeviceInfo, g: dict[str, Any], env: Envelope) -> list[Finding]:
    """Cabinet power above the sum of its lamps' power by more than losses explain."""
    v = env.values
    p = v.get("active_power_w")
    if p is None:
        phases = [v[k] for k in ("active_power_l1_w", "active_power_l2_w", "active_power_l3_w")
                  if k in v]
        p = sum(phases) if phases else None
    expected = device.meta.get("lamps")
    if p is None or (expected and len(g["pw"]) < int(expected)) or not g["pw"]:
        return []
    ts = env.ts_us
    if _behind(g, ts):  # the cabinet catching up: its lamps are ahead
        return []
    last = g.get("cp")
    g["cp"] = p
    if last is None or abs(p - last) > max(CABINET_MARGIN_W, 0.1 * last):
        g["lc"] = ts  # the cabinet saw the street switch before its lamps could say so
    if ts - g["lc"] < g["gap"]:  # a lamp may not have reported since the street last switched
        return []
    if g["lt"] and ts - min(g["lt"].values()) > 2 * g["gap"]:
        return []  # a lamp has gone quiet: its last power is no longer what the cabinet feeds
    lamps = g["sum"] if g["sum"] > 0.05 else 0.0  # a running sum keeps rounding dust
    own = g.get("own")
    if lamps == 0.0:  # the street is off: what the cabinet draws is its own clock and modem
        g["own"] = p if own is None else own + 0.1 * (p - own)
        g["cr"] = 0
        return []
    threshold = lamps * (1.0 + CABINET_MARGIN) + (own or 0.0) + CABINET_MARGIN_W
    cab = device.device_id
    if p > threshold:
        g["ok"] = 0
        if g["cr"] == 0:
            g["cs"] = ts
        g["cr"] += 1
        at = ts
        if not g["co"] and g["cr"] >= CABINET_RUN and ts - g["cs"] >= CABINET_HOLD_S * US:
            g["co"], at = True, g["cs"]
        if g["co"]:
            return [Finding(Kind.CABINET_OVERCONSUMPTION, True, at, device_id=cab,
                            score=min(1.0, 0.5 + 0.5 * (p - threshold) / max(threshold, 1.0)),
                            evidence={"cabinet_power_w": p, "lamps_power_w": round(lamps, 1),
                                      "threshold_w": round(threshold, 1),
                                      "lamps_reporting": len(g["pw"]),
                                      "ratio": round(p / lamps, 3) if lamps > 0 else None})]
        return []
    g["cr"] = 0
    consistent = p <= lamps * (1.0 + CABINET_MARGIN / 2) + (own or 0.0) + CABINET_MARGIN_W
    if g["co"] and consistent:  # lit and consistent (a hysteresis of half the margin): repaired
        g["ok"] += 1
        if g["ok"] >= CABINET_RUN:
            g["co"], g["ok"] = False, 0
            return [Finding(Kind.CABINET_OVERCONSUMPTION, False, ts, device_id=cab)]
    return []


RULES: dict[str, list[Rule]] = {"streetlight": [lamp_rule]}
GROUP_RULES: dict[str, list[Rule]] = {"streetlight": [cabinet_rule],
                                      "lighting_cabinet": [cabinet_rule]}
