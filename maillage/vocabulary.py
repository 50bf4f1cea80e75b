"""The metric vocabulary: canonical names, units, and which ones are cumulative counters.

Names of what devices measure (not Prometheus metrics: those are in `maillage.observability`).
"""

from __future__ import annotations

import re
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
    # Appended for the TIC, SenML and lighting formats (issue 4).
    BURNING_HOURS_H = "burning_hours_h"
    """Cumulative lamp burning time, hours."""
    ENERGY_IMPORT_HC_WH = "energy_import_hc_wh"
    """Off-peak (heures creuses) import register of a Linky/CBE meter, Wh."""
    ENERGY_IMPORT_HP_WH = "energy_import_hp_wh"
    """Peak (heures pleines) import register, Wh."""
    ENERGY_IMPORT_EJP_HN_WH = "energy_import_ejp_hn_wh"
    """EJP option, normal hours register, Wh."""
    ENERGY_IMPORT_EJP_HPM_WH = "energy_import_ejp_hpm_wh"
    """EJP option, mobile peak hours register, Wh."""
    ENERGY_IMPORT_HC_BLUE_WH = "energy_import_hc_blue_wh"
    """Tempo option registers (blue/white/red days, off-peak/peak), Wh."""
    ENERGY_IMPORT_HP_BLUE_WH = "energy_import_hp_blue_wh"
    ENERGY_IMPORT_HC_WHITE_WH = "energy_import_hc_white_wh"
    ENERGY_IMPORT_HP_WHITE_WH = "energy_import_hp_white_wh"
    ENERGY_IMPORT_HC_RED_WH = "energy_import_hc_red_wh"
    ENERGY_IMPORT_HP_RED_WH = "energy_import_hp_red_wh"
    ENERGY_IMPORT_F01_WH = "energy_import_f01_wh"
    """Linky standard mode supplier registers EASF01..EASF10, Wh."""
    ENERGY_IMPORT_F02_WH = "energy_import_f02_wh"
    ENERGY_IMPORT_F03_WH = "energy_import_f03_wh"
    ENERGY_IMPORT_F04_WH = "energy_import_f04_wh"
    ENERGY_IMPORT_F05_WH = "energy_import_f05_wh"
    ENERGY_IMPORT_F06_WH = "energy_import_f06_wh"
    ENERGY_IMPORT_F07_WH = "energy_import_f07_wh"
    ENERGY_IMPORT_F08_WH = "energy_import_f08_wh"
    ENERGY_IMPORT_F09_WH = "energy_import_f09_wh"
    ENERGY_IMPORT_F10_WH = "energy_import_f10_wh"
    ENERGY_IMPORT_D01_WH = "energy_import_d01_wh"
    """Linky standard mode distributor registers EASD01..EASD04, Wh."""
    ENERGY_IMPORT_D02_WH = "energy_import_d02_wh"
    ENERGY_IMPORT_D03_WH = "energy_import_d03_wh"
    ENERGY_IMPORT_D04_WH = "energy_import_d04_wh"
    APPARENT_POWER_EXPORT_VA = "apparent_power_export_va"
    """Instantaneous injected apparent power (Linky SINSTI), VA."""
    VOLTAGE_L1_V = "voltage_l1_v"
    """Per-phase values of three-phase meters and lighting cabinets."""
    VOLTAGE_L2_V = "voltage_l2_v"
    VOLTAGE_L3_V = "voltage_l3_v"
    CURRENT_L1_A = "current_l1_a"
    CURRENT_L2_A = "current_l2_a"
    CURRENT_L3_A = "current_l3_a"
    ACTIVE_POWER_L1_W = "active_power_l1_w"
    ACTIVE_POWER_L2_W = "active_power_l2_w"
    ACTIVE_POWER_L3_W = "active_power_l3_w"
    APPARENT_POWER_L1_VA = "apparent_power_l1_va"
    APPARENT_POWER_L2_VA = "apparent_power_l2_va"
    APPARENT_POWER_L3_VA = "apparent_power_l3_va"


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
    Metric.BURNING_HOURS_H: "h",
    Metric.APPARENT_POWER_EXPORT_VA: "VA",
}
# The appended registers and per-phase values take the unit their name ends with.
_SUFFIX_UNITS = {"_wh": "Wh", "_va": "VA", "_w": "W", "_v": "V", "_a": "A"}
for _m in Metric:
    if _m not in METRIC_UNITS:
        METRIC_UNITS[_m] = next(u for sfx, u in _SUFFIX_UNITS.items() if _m.endswith(sfx))

CUMULATIVE: frozenset[str] = frozenset(
    {Metric.ENERGY_IMPORT_WH, Metric.ENERGY_EXPORT_WH, Metric.BURNING_HOURS_H}
)
"""Counters whose bucket value is a difference of indexes, not a mean."""

KNOWN: frozenset[str] = frozenset(m.value for m in Metric)


_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def is_valid_name(name: str) -> bool:
    """A metric name a device may send: ASCII lower-case letters, digits and `_`, 1..64 chars,
    starting with a letter (checked on every value of every message: canonical names first)."""
    return name in KNOWN or _NAME.fullmatch(name) is not None
