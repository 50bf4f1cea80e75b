"""Care rules per device: alarms, batteries, indoor climate; the dwelling's routine is in
`care_routine` (registered here as the care group rule).

A fall or panic event is an immediate critical anomaly on the device that sent it (the pendant);
a battery is low (the device says so, or its level is under `BATTERY_LOW_PCT`) until it is
replaced; indoor heat and cold count when held for hours, with hysteresis. Thresholds come from
public health guidance, never from what a simulator does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from maillage.envelope import Envelope
from maillage.processors.detection import care_routine
from maillage.processors.detection.model import DeviceInfo, Finding, Kind, Memory, Severity

log = logging.getLogger(__name__)

US = 1_000_000
HOUR_US = 3600 * US

ALARMS = {"fall_detected": Kind.FALL, "panic_button": Kind.PANIC_BUTTON}

BATTERY_LOW_PCT = 15.0
"""Sensor makers warn between 10 and 20 %: a few weeks of life left."""
BATTERY_REPLACED_PCT = 30.0
"""A level back above this is a new battery (hysteresis: a low one never climbs this far)."""

HEAT_C, HEAT_CLEAR_C = 28.0, 27.0
"""Above 28 °C indoors an elderly person is at risk (French heatwave plan, HCSP guidance)."""
COLD_C, COLD_CLEAR_C = 17.0, 18.0
"""WHO housing guidelines: at least 18 °C indoors, more for the elderly; 17 °C is too cold."""
CLIMATE_NOISE_C = 0.5
"""A run above (below) the threshold survives a dip of sensor noise."""
CLIMATE_MIN_US = 2 * HOUR_US
"""Held this long ("for hours") before it is raised."""


# -- per device ------------------------------------------------------------------------------

def alarm(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """A fall or a panic button: critical at once, one anomaly per event (a person ends it)."""
    if env.kind != "event":
        return ()
    kind = ALARMS.get(env.event or "")
    if kind is None:
        return ()
    last = memory.get(kind.value)
    if last is not None and env.ts_us <= last:
        return ()  # the same event again (retry, replay)
    memory[kind.value] = env.ts_us
    evidence: dict[str, Any] = {"event": env.event, "dwelling": device.dwelling}
    if device.meta.get("resident"):
        evidence["resident"] = device.meta["resident"]  # a pseudonym, never a name
    for k, v in env.attrs.items():
        if k != "unknown_event":
            evidence[k] = v
    return (Finding(kind, True, env.ts_us, Severity.CRITICAL, 1.0, evidence),)


def battery(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """Battery low from the level or the device's own event; cleared when replaced."""
    pct = env.values.get("battery_pct")
    said_low = env.kind == "event" and env.event == "battery_low"
    if pct is None and not said_low:
        return ()
    if not memory.get("low"):
        if said_low or (pct is not None and pct < BATTERY_LOW_PCT):
            memory["low"] = True
            ev: dict[str, Any] = {"battery_pct": pct, "threshold_pct": BATTERY_LOW_PCT}
            if said_low:
                ev["event"] = "battery_low"
            return (Finding(Kind.BATTERY_LOW, True, env.ts_us, Severity.INFO, 1.0, ev),)
        return ()
    if pct is not None and pct >= BATTERY_REPLACED_PCT:
        memory["low"] = False
        return (Finding(Kind.BATTERY_LOW, False, env.ts_us, Severity.INFO, 1.0,
                        {"battery_pct": pct}),)
    return ()


def indoor_climate(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """Indoor heat above 28 °C or cold below 17 °C held for hours; cleared with hysteresis."""
    t = env.values.get("temperature_c")
    if t is None:
        return ()
    out: list[Finding] = []
    _band(memory, "h", Kind.INDOOR_HEAT, t, env.ts_us, 1.0, HEAT_C, HEAT_CLEAR_C, out)
    _band(memory, "c", Kind.INDOOR_COLD, t, env.ts_us, -1.0, COLD_C, COLD_CLEAR_C, out)
    return out


def _band(memory: Memory, slot: str, kind: Kind, t: float, ts: int, sign: float, limit: float,
          clear: float, out: list[Finding]) -> None:
    """One side of the climate rule; `sign` +1 watches above `limit`, -1 below."""
    st = memory.get(slot)  # [run start µs, open 0/1, extreme °C]
    if st is None:
        if sign * (t - limit) < 0:
            return
        st = memory[slot] = [ts, 0, t]
    if st[1]:
        st[2] = max(st[2], t) if sign > 0 else min(st[2], t)
        if sign * (t - clear) <= 0:
            del memory[slot]
            out.append(Finding(kind, False, ts, Severity.WARNING, 1.0, {"temperature_c": t}))
        return
    if sign * (t - (limit - sign * CLIMATE_NOISE_C)) < 0:
        del memory[slot]  # the run is broken
        return
    st[2] = max(st[2], t) if sign > 0 else min(st[2], t)
    if sign * (t - limit) >= 0 and ts - st[0] >= CLIMATE_MIN_US:
        st[1] = 1
        out.append(Finding(kind, True, st[0], Severity.WARNING, 1.0, {
            "temperature_c": t, "threshold_c": limit, "hours": round((ts - st[0]) / HOUR_US, 1),
            ("max_c" if sign > 0 else "min_c"): st[2]}))


CARE_TYPES = ("care_motion", "care_door", "care_bed", "care_button", "care_env", "care_hub")
RULES = {t: [alarm, battery, indoor_climate] for t in CARE_TYPES}
GROUP_RULES = {t: [care_routine.dwelling] for t in CARE_TYPES}
