"""The metric vocabulary: canonical names, units, and which ones are cumulative counters."""

from __future__ import annotations

from enum import StrEnum


class Metric(StrEnum):
    """Canonical metric names; the unit is part of the name."""

    ENERGY_IMPORT_WH = "energy_import_wh"
    """Cumulative imported active energy index, Wh."""
    ENERGY_EXPORT_WH = "energy_export_wh"
    """Cumulative exported (injected) active energy index, Wh."""
    ACTIVE_POWER_W = "active_power_w"
    APPARENT_POWER_VA = "apparent_power_va"
    VOLTAGE_V = "voltage_v"
    CURRENT_A = "current_a"
    SUBSCRIBED_POWER_VA = "subscribed_power_va"
    LAMP_ON = "lamp_on"
    """1 when the lamp is lit, 0 when off."""
    DIMMING_PCT = "dimming_pct"
    LAMP_POWER_W = "lamp_power_w"
    ILLUMINANCE_LUX = "illuminance_lux"
    PRESENCE_COUNT = "presence_count"
    MOTION = "motion"
    DOOR_OPEN = "door_open"
    BED_OCCUPIED = "bed_occupied"
    TEMPERATURE_C = "temperature_c"
    HUMIDITY_PCT = "humidity_pct"
    BATTERY_PCT = "battery_pct"
    RSSI_DBM = "rssi_dbm"


METRIC_UNITS: dict[Metric, str] = {
    Metric.ENERGY_IMPORT_WH: "Wh",
    Metric.ENERGY_EXPORT_WH: "Wh",
    Metric.ACTIVE_POWER_W: "W",
    Metric.APPARENT_POWER_VA: "VA",
    Metric.VOLTAGE_V: "V",
    Metric.CURRENT_A: "A",
    Metric.SUBSCRIBED_POWER_VA: "VA",
    Metric.LAMP_ON: "1",
    Metric.DIMMING_PCT: "%",
    Metric.LAMP_POWER_W: "W",
    Metric.ILLUMINANCE_LUX: "lx",
    Metric.PRESENCE_COUNT: "1",
    Metric.MOTION: "1",
    Metric.DOOR_OPEN: "1",
    Metric.BED_OCCUPIED: "1",
    Metric.TEMPERATURE_C: "Cel",
    Metric.HUMIDITY_PCT: "%RH",
    Metric.BATTERY_PCT: "%EL",
    Metric.RSSI_DBM: "dBm",
}

CUMULATIVE: frozenset[str] = frozenset({Metric.ENERGY_IMPORT_WH, Metric.ENERGY_EXPORT_WH})
"""Counters whose bucket value is a difference of indexes, not a mean."""

KNOWN: frozenset[str] = frozenset(m.value for m in Metric)


def is_cumulative(metric: str) -> bool:
    """True for index counters (`energy_*` and any extra `*_wh` index a device declares)."""
    return metric in CUMULATIVE or (metric.startswith("energy_") and metric.endswith("_wh"))


def is_valid_name(name: str) -> bool:
    """A metric name a device may send: lower-case letters, digits and `_`, 1..64 chars."""
    return 0 < len(name) <= 64 and name[0].isalpha() and all(
        c.islower() or c.isdigit() or c == "_" for c in name
    )
