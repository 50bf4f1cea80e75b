"""SenML units (RFC 8428 and RFC 8798 secondary units) and how a record picks its metric.

A record's metric is chosen from its short name (the resolved name after its last `:` or `/`,
lower-cased, `-` and `.` read as `_`) and its unit, first match wins:

1. the short name is a canonical metric (`lamp_power_w`);
2. the short name plus the unit's suffix is one (`energy_import` + `Wh` -> `energy_import_wh`);
3. the short name is a known alias (`power`, `energy`, `temp`, `voltage_l2`...);
4. the unit alone implies a metric (`W` -> `active_power_w`, `Cel` -> `temperature_c`...);
5. the short name is a valid metric name: kept as-is, flagged unknown, its unit not converted.

In cases 1-3 a unit, when given, must convert to the metric's unit (else `bad_unit`). A record
matching none of these is `unknown_metric`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maillage.errors import DlqReason, PayloadError
from maillage.vocabulary import KNOWN, METRIC_UNITS, Metric, is_valid_name


@dataclass(frozen=True, slots=True)
class Unit:
    """A SenML unit as a scale and offset onto the unit of our metrics."""

    base: str
    scale: float = 1.0
    offset: float = 0.0

    def convert(self, value: float) -> float:
        """The value in the base unit."""
        return value * self.scale + self.offset


UNITS: dict[str, Unit] = {
    "W": Unit("W"), "kW": Unit("W", 1000.0),
    "Wh": Unit("Wh"), "kWh": Unit("Wh", 1000.0), "J": Unit("Wh", 1 / 3600),
    "VA": Unit("VA"), "kVA": Unit("VA", 1000.0),
    "V": Unit("V"), "mV": Unit("V", 0.001),
    "A": Unit("A"), "mA": Unit("A", 0.001),
    "Cel": Unit("Cel"), "K": Unit("Cel", 1.0, -273.15),
    "%RH": Unit("%RH"), "%EL": Unit("%EL"), "%": Unit("%"), "/": Unit("%", 100.0),
    "lx": Unit("lx"),
    "dBm": Unit("dBm"), "dBW": Unit("dBm", 1.0, 30.0),
    "h": Unit("h"), "min": Unit("h", 1 / 60), "s": Unit("h", 1 / 3600),
    "1": Unit("1"), "count": Unit("1"),
}
"""Accepted units; anything else cannot be converted."""

_SUFFIX = {"W": "w", "Wh": "wh", "VA": "va", "V": "v", "A": "a", "Cel": "c", "%RH": "pct",
           "%EL": "pct", "%": "pct", "lx": "lux", "dBm": "dbm", "h": "h"}

UNIT_DEFAULTS: dict[str, Metric] = {
    "W": Metric.ACTIVE_POWER_W, "Wh": Metric.ENERGY_IMPORT_WH, "VA": Metric.APPARENT_POWER_VA,
    "V": Metric.VOLTAGE_V, "A": Metric.CURRENT_A, "Cel": Metric.TEMPERATURE_C,
    "%RH": Metric.HUMIDITY_PCT, "%EL": Metric.BATTERY_PCT, "lx": Metric.ILLUMINANCE_LUX,
    "dBm": Metric.RSSI_DBM,
}
"""Units that name their metric alone (`%`, `h` and counts need a name)."""

ALIASES: dict[str, Metric] = {
    "power": Metric.ACTIVE_POWER_W, "active_power": Metric.ACTIVE_POWER_W,
    "energy": Metric.ENERGY_IMPORT_WH, "index": Metric.ENERGY_IMPORT_WH,
    "export": Metric.ENERGY_EXPORT_WH, "energy_export": Metric.ENERGY_EXPORT_WH,
    "apparent_power": Metric.APPARENT_POWER_VA, "subscribed_power": Metric.SUBSCRIBED_POWER_VA,
    "voltage": Metric.VOLTAGE_V, "current": Metric.CURRENT_A,
    "temperature": Metric.TEMPERATURE_C, "temp": Metric.TEMPERATURE_C,
    "humidity": Metric.HUMIDITY_PCT, "battery": Metric.BATTERY_PCT,
    "illuminance": Metric.ILLUMINANCE_LUX, "luminosity": Metric.ILLUMINANCE_LUX,
    "rssi": Metric.RSSI_DBM,
    "lamp": Metric.LAMP_ON, "dimming": Metric.DIMMING_PCT, "dim_level": Metric.DIMMING_PCT,
    "lamp_power": Metric.LAMP_POWER_W, "burning_hours": Metric.BURNING_HOURS_H,
    "presence": Metric.PRESENCE_COUNT, "door": Metric.DOOR_OPEN, "bed": Metric.BED_OCCUPIED,
}

_PHASED = {Metric.VOLTAGE_V: "voltage_l{}_v", Metric.CURRENT_A: "current_l{}_a",
           Metric.ACTIVE_POWER_W: "active_power_l{}_w",
           Metric.APPARENT_POWER_VA: "apparent_power_l{}_va"}
_PHASE = re.compile(r"(.+)_l([123])")
_SPLIT = re.compile(r"[:/]")


def split_name(name: str) -> tuple[str, str]:
    """`(prefix, short)`: the resolved name cut after its last `:` or `/`; short normalized."""
    parts = _SPLIT.split(name)
    short = parts[-1]
    prefix = name[: len(name) - len(short)]
    return prefix, short.lower().replace("-", "_").replace(".", "_")


def _alias(short: str) -> str | None:
    if short in ALIASES:
        return ALIASES[short]
    phased = _PHASE.fullmatch(short)
    if phased and ALIASES.get(phased[1]) in _PHASED:
        return _PHASED[ALIASES[phased[1]]].format(phased[2])
    return None


def _compatible(unit: Unit, metric: str) -> bool:
    target = METRIC_UNITS.get(Metric(metric))
    return unit.base == target or (unit.base == "%" and target in ("%RH", "%EL"))


def pick_metric(short: str, unit_text: str | None, record: str) -> tuple[str, Unit | None]:
    """The metric a record feeds and the unit to convert its value with (None: as sent)."""
    unit = UNITS.get(unit_text) if unit_text else None
    suffixed = f"{short}_{_SUFFIX[unit.base]}" if unit and unit.base in _SUFFIX else None
    named = (short if short in KNOWN else suffixed if suffixed in KNOWN else _alias(short))
    if named is not None:
        if unit_text and (unit is None or not _compatible(unit, named)):
            raise PayloadError(DlqReason.BAD_UNIT,
                               f"{record}: unit {unit_text[:20]!r} does not fit metric {named}")
        return named, unit
    if unit is not None and unit.base in UNIT_DEFAULTS:
        return UNIT_DEFAULTS[unit.base], unit
    if is_valid_name(short):
        return short, None
    raise PayloadError(DlqReason.UNKNOWN_METRIC,
                       f"{record}: neither its name nor its unit {unit_text!r} maps to a metric")
