"""Public lighting telemetry: the streetlight status vocabulary and sanity ranges.

Streetlights and lighting cabinets report through canonical JSON or SenML; these checks apply to
devices registered as `streetlight` or `lighting_cabinet`:

- `attrs["status"]` (or a top-level `"status"` in canonical JSON, or a SenML string record named
  `status`) must be one of `LAMP_STATUSES`; anything else is `invalid_schema`, since an alerting
  rule cannot act on a status it does not know.
- `lamp_on` is 0 or 1, `dimming_pct` lies in 0..100, lamp power and burning hours are not
  negative; otherwise `bad_value`.
"""

from __future__ import annotations

from collections.abc import Mapping

from maillage.errors import DlqReason, PayloadError
from maillage.vocabulary import Metric

LIGHTING_TYPES: frozenset[str] = frozenset({"streetlight", "lighting_cabinet"})

LAMP_STATUSES: frozenset[str] = frozenset(
    {"ok", "lampFailure", "dimmingFailure", "supplyLoss", "communicationFailure"}
)
"""Streetlight health as controllers report it; `ok` means no fault."""

_RANGES: dict[str, tuple[float, float]] = {
    Metric.DIMMING_PCT.value: (0.0, 100.0),
    Metric.LAMP_POWER_W.value: (0.0, float("inf")),
    Metric.BURNING_HOURS_H.value: (0.0, float("inf")),
}
_LAMP_ON = Metric.LAMP_ON.value


def is_lighting(device_type: str | None) -> bool:
    """True for the device types whose telemetry these checks apply to."""
    return device_type in LIGHTING_TYPES


def check_status(status: object, where: str = "") -> str:
    """A known lamp status, or raise `invalid_schema`."""
    if not isinstance(status, str) or status not in LAMP_STATUSES:
        raise PayloadError(
            DlqReason.INVALID_SCHEMA,
            f"{where}status {str(status)[:40]!r} is not one of {sorted(LAMP_STATUSES)}",
        )
    return status


def check_values(values: Mapping[str, float], where: str = "") -> None:
    """Reject lighting values outside their physical range with `bad_value`."""
    lamp_on = values.get(_LAMP_ON)
    if lamp_on is not None and lamp_on not in (0.0, 1.0):
        raise PayloadError(DlqReason.BAD_VALUE, f"{where}lamp_on={lamp_on} must be 0 or 1")
    for name, (low, high) in _RANGES.items():
        value = values.get(name)
        if value is not None and not low <= value <= high:
            raise PayloadError(DlqReason.BAD_VALUE, f"{where}{name}={value} is out of range")


def check_telemetry(values: Mapping[str, float], attrs: Mapping[str, object],
                    where: str = "") -> None:
    """Both checks on one record of a lighting device."""
    check_values(values, where)
    if "status" in attrs:
        check_status(attrs["status"], where)
