"""What the pure device models produce, before it is encoded in a device's wire format."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Sample:
    """Measured values of one device at one time."""

    ts: datetime
    values: dict[str, float]
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A discrete event (`up/event`), e.g. `bed_exit` or `fall_detected`."""

    ts: datetime
    event: str
    details: dict[str, str | float] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MeterReading:
    """A meter's registers and instantaneous values: enough for TIC frames as well as JSON."""

    ts: datetime
    registers_wh: dict[str, int]
    """`{"base": …}` or `{"hc": …, "hp": …}`: the import index per tariff period."""
    export_wh: int | None
    period: str
    """Current TIC tariff period: `TH..`, `HC..` or `HP..`."""
    power_w: float
    apparent_va: float
    export_va: float | None
    voltage_v: float
    current_a: float
    subscribed_va: int

    def sample(self) -> Sample:
        """The canonical metrics of this reading."""
        values = {"energy_import_wh": float(sum(self.registers_wh.values())),
                  "active_power_w": self.power_w, "apparent_power_va": self.apparent_va,
                  "voltage_v": self.voltage_v, "current_a": self.current_a}
        if self.export_wh is not None:
            values["energy_export_wh"] = float(self.export_wh)
        return Sample(self.ts, values)


Output = Sample | DeviceEvent | MeterReading


class DeviceModel(Protocol):
    """A simulated device: pure behaviour, stepped by the engine at the times it asks for."""

    device_id: str

    def first_due(self, start: datetime) -> datetime:
        """When the device first reports after the simulation starts."""
        ...

    def next_reading(self, now: datetime, rng: random.Random) -> list[Output]:
        """What the device reports at `now` (its state advances)."""
        ...

    def next_due(self, now: datetime) -> datetime:
        """When the device reports next, after reporting at `now`."""
        ...
