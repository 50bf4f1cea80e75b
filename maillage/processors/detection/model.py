"""What the detection stage's parts share: device context, rule findings, anomalies.

A rule is a small pure function `rule(device, memory, envelope) -> Iterable[Finding]`: it reads
one record of one device, keeps what it must remember in `memory` (its own JSON-serialisable
dict inside the device's checkpointed state) and says, for each anomaly kind it watches, whether
the condition holds (`active=True`) or has cleared (`active=False`) at the record's measurement
time. Rules never read the wall clock and never look at labels: the same records in the same
order give the same findings, live, replayed or accelerated. The engine (`engine.py`) turns
findings into anomaly transitions (open once, close once) with deterministic ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson

from maillage.envelope import Envelope


class Severity(StrEnum):
    """How urgent an anomaly is; `critical` is for a person in danger (fall, panic)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Kind(StrEnum):
    """Anomaly kinds. Names match the simulator's labels where both exist."""

    # Meters
    SPIKE = "spike"
    NIGHT_OVERCONSUMPTION = "night_overconsumption"
    ZERO_CONSUMPTION = "zero_consumption"
    METER_STUCK = "meter_stuck"
    VOLTAGE_OUT_OF_RANGE = "voltage_out_of_range"
    OVER_SUBSCRIBED_POWER = "over_subscribed_power"
    BASELINE_SHIFT = "baseline_shift"
    UNEXPECTED_EXPORT = "unexpected_export"
    # Public lighting
    LAMP_FAILURE = "lamp_failure"
    DAY_BURNER = "day_burner"
    DIMMING_NOT_APPLIED = "dimming_not_applied"
    CABINET_OVERCONSUMPTION = "cabinet_overconsumption"
    BURNING_HOURS = "burning_hours"
    # Home care
    FALL = "fall"
    PANIC_BUTTON = "panic_button"
    LONG_INACTIVITY = "long_inactivity"
    NIGHT_WANDERING = "night_wandering"
    INDOOR_HEAT = "indoor_heat"
    INDOOR_COLD = "indoor_cold"
    BATTERY_LOW = "battery_low"
    # Silent devices (wall clock)
    DEVICE_OFFLINE = "device_offline"
    GROUP_OFFLINE = "group_offline"
    # The online statistical detector
    UNUSUAL_VALUE = "unusual_value"
    # Data quality: what reaches the platform is wrong
    MALFORMED_PAYLOAD = "malformed_payload"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    LATE_READING = "late_reading"
    CLOCK_SKEW = "clock_skew"


CARE_KINDS = frozenset({Kind.FALL, Kind.PANIC_BUTTON, Kind.LONG_INACTIVITY, Kind.NIGHT_WANDERING,
                        Kind.INDOOR_HEAT, Kind.INDOOR_COLD})
"""Kinds that are health data whatever the device (battery and offline follow the device type)."""

IMMEDIATE_KINDS = frozenset({Kind.FALL, Kind.PANIC_BUTTON})
"""Kinds raised on the record itself; a person, not a rule, ends them (alerting)."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the registry says of a device, as the rules need it."""

    tenant: str
    device_id: str
    type: str
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Paris"))
    lat: float | None = None
    lon: float | None = None
    commune: str | None = None
    district: str | None = None
    site: str | None = None
    dwelling: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    expected_interval_s: int | None = None

    @property
    def is_care(self) -> bool:
        return self.type.startswith("care_")


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict on one kind at one measurement time.

    `active=True` opens the anomaly of `kind` on the device (or keeps it open, updating its
    score and evidence); `active=False` closes it at `ts_us`. `evidence` holds what a person
    needs to judge it: the values and the thresholds they were compared with (JSON-able).
    """

    kind: Kind
    active: bool
    ts_us: int
    severity: Severity = Severity.WARNING
    score: float = 1.0
    evidence: dict[str, Any] = field(default_factory=dict)
    device_id: str | None = None
    """The device the anomaly is raised on; None: the record's own device. A group rule names
    the device that stands for the group (the dwelling's hub, the cabinet)."""


Memory = dict[str, Any]
"""A rule's own slot in the device state: plain JSON-able values (no datetimes, no numpy)."""

Rule = Callable[[DeviceInfo, Memory, Envelope], Iterable[Finding]]
"""`rule(device, memory, envelope)`: the findings of one record.

Rule modules export `RULES: dict[str, list[Rule]]` (device type -> rules; `"*"` for every type),
whose `memory` is the device's own, and `GROUP_RULES` of the same shape, whose `memory` is shared
by every device of the record's group (`group_of`): a dwelling's sensors, a cabinet's lamps."""


def group_of(device: DeviceInfo) -> str | None:
    """The group whose devices share group-rule memory: a care dwelling or a lighting cabinet."""
    if device.is_care and device.dwelling:
        return f"dwelling:{device.dwelling}"
    if device.type == "streetlight" and device.meta.get("cabinet"):
        return f"cabinet:{device.meta['cabinet']}"
    if device.type == "lighting_cabinet":
        return f"cabinet:{device.device_id}"
    return None


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly of one device (or group): open while `end_us` is None."""

    tenant: str
    device_id: str
    kind: Kind
    severity: Severity
    score: float
    start_us: int
    end_us: int | None
    evidence: dict[str, Any]
    group: str | None = None  # "cabinet:<id>", "district:<name>"… for a group anomaly

    @property
    def id(self) -> str:
        """Deterministic: the same anomaly found again after a replay has the same id."""
        return anomaly_id(self.tenant, self.device_id, self.kind, self.start_us)


def anomaly_id(tenant: str, device_id: str, kind: str, start_us: int) -> str:
    """A stable id from what identifies an anomaly (32 hex characters)."""
    raw = f"{tenant}\x1f{device_id}\x1f{kind}\x1f{start_us}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


Change = Literal["open", "update", "close"]


@dataclass(frozen=True, slots=True)
class Transition:
    """An anomaly opened, updated (score, evidence, severity) or closed.

    What the stage stores (the `anomalies` row, upserted by id) and produces to
    `maillage.anomalies` (keyed `{tenant}/{device_id}`, one record per transition). `event_id`
    lets every consumer drop a transition it already had.
    """

    anomaly: Anomaly
    change: Change
    at_us: int | None = None
    """For an update: the measurement time of the finding that caused it, so that successive
    updates of one anomaly have distinct event ids (None: the anomaly's start)."""

    @property
    def event_id(self) -> str:
        a = self.anomaly
        if self.change == "close":
            at = a.end_us
        elif self.change == "update" and self.at_us is not None:
            at = self.at_us
        else:
            at = a.start_us
        return f"{a.id}:{self.change}:{at}"

    def to_dict(self) -> dict[str, Any]:
        """The `maillage.anomalies` record (times as epoch microseconds)."""
        a = self.anomaly
        return {"event_id": self.event_id, "change": self.change, "id": a.id, "tenant": a.tenant,
                "device_id": a.device_id, "kind": str(a.kind), "severity": str(a.severity),
                "score": a.score, "start": a.start_us, "end": a.end_us, "evidence": a.evidence,
                "group": a.group}

    def to_kafka(self) -> bytes:
        return orjson.dumps(self.to_dict())
