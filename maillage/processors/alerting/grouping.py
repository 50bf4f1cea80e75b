"""What an anomaly transition means for alerts: which problem it belongs to, care or not.

Pure functions over one `maillage.anomalies` record (`Transition.to_kafka()`): the problem an
anomaly belongs to is its kind on its device, or on its group when it has one (a cabinet, a
district), so that repeats of the same problem count on one live alert instead of opening many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from maillage.processors.detection.model import CARE_KINDS, IMMEDIATE_KINDS

SEVERITIES = ("info", "warning", "critical")

NEVER_AUTO_RESOLVED = frozenset(str(k) for k in IMMEDIATE_KINDS)
"""A fall or a panic button is resolved by a person, never because the anomaly closed."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One anomaly transition as the alerting stage reads it."""

    event_id: str
    change: str  # open | update | close
    anomaly_id: str
    tenant: str
    device_id: str
    kind: str
    severity: str
    start_us: int
    end_us: int | None
    group: str | None

    @classmethod
    def from_kafka(cls, value: bytes) -> Incoming:
        """Decode a record; ValueError/KeyError/TypeError when it is not a transition."""
        d: dict[str, Any] = orjson.loads(value)
        if d["change"] not in ("open", "update", "close"):
            raise ValueError(f"unknown change {d['change']!r}")
        severity = d.get("severity") or "warning"
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}")
        return cls(event_id=str(d["event_id"]), change=d["change"], anomaly_id=str(d["id"]),
                   tenant=str(d["tenant"]), device_id=str(d["device_id"]), kind=str(d["kind"]),
                   severity=severity, start_us=int(d["start"]),
                   end_us=None if d.get("end") is None else int(d["end"]),
                   group=d.get("group"))

    @property
    def group_key(self) -> str:
        """The problem: kind + group (when the anomaly is a group's) or device."""
        return f"{self.kind}|{self.group or self.device_id}"


def is_care(kind: str, care_device: bool) -> bool:
    """Health data: a care kind, or any anomaly of a care device (battery, offline)."""
    return care_device or kind in CARE_KINDS


def auto_resolves(kind: str) -> bool:
    """Whether the anomaly closing may resolve its alert."""
    return kind not in NEVER_AUTO_RESOLVED


def higher(a: str, b: str) -> str:
    """The more urgent of two severities."""
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b
