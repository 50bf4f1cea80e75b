"""What the detection processor checkpoints: each device's and each group's state, as JSON.

A device state holds the memory of every rule that saw the device (keyed by the rule's
`module.name`, plus the `"_seen"` slot of `silent.learn` and one `"online:<metric>"` slot per
series of the statistical detector), the anomalies it has open (keyed by kind, or
`"<device>/<kind>"` when a finding named another device) and its event-time clock (the latest
measurement time per stream, from which the watermark follows). A group state (a dwelling's
sensors, a cabinet's lamps: `model.group_of`) holds the memory shared by the group's rules and the
anomalies they opened. Both round-trip through JSON unchanged. The statistical detectors' states
(larger, changing once per interval) are checkpointed apart, only when they changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from maillage.processors.detection.model import Anomaly, Kind, Memory, Severity

SEEN = "_seen"
"""The memory slot of `silent.learn` (last_ts, last_rx, interval_s)."""

SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(slots=True)
class Opened:
    """An open anomaly as the engine keeps it (what it last stored and produced)."""

    device_id: str
    kind: Kind
    severity: Severity
    score: float
    start_us: int
    evidence: dict[str, Any]
    group: str | None = None
    updated_us: int = 0
    """Measurement time of the last update produced (updates are rate-limited on it)."""

    def anomaly(self, tenant: str, end_us: int | None = None,
                evidence: dict[str, Any] | None = None) -> Anomaly:
        return Anomaly(tenant=tenant, device_id=self.device_id, kind=self.kind,
                       severity=self.severity, score=self.score, start_us=self.start_us,
                       end_us=end_us, evidence=self.evidence if evidence is None else evidence,
                       group=self.group)

    def to_json(self) -> dict[str, Any]:
        return {"d": self.device_id, "k": str(self.kind), "v": str(self.severity), "s": self.score,
                "t": self.start_us, "e": self.evidence, "g": self.group, "u": self.updated_us}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Opened:
        return cls(d["d"], Kind(d["k"]), Severity(d["v"]), d["s"], d["t"], d["e"], d.get("g"),
                   d.get("u", 0))


@dataclass(slots=True)
class GroupState:
    """Memory shared by a group's devices, and the anomalies its rules opened."""

    memory: dict[str, Memory] = field(default_factory=dict)
    open: dict[str, Opened] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"m": self.memory, "o": {k: v.to_json() for k, v in self.open.items()}}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> GroupState:
        d = orjson.loads(raw)
        return cls(d.get("m", {}), {k: Opened.from_json(v) for k, v in d.get("o", {}).items()})


@dataclass(slots=True)
class DeviceState:
    """One device's checkpointed state (see the module docstring)."""

    memory: dict[str, Memory] = field(default_factory=dict)
    open: dict[str, Opened] = field(default_factory=dict)
    clock: dict[str, int] = field(default_factory=dict)
    """Latest measurement time (epoch µs) per stream: reading, event, status."""
    detectors: dict[str, Any] = field(default_factory=dict)
    """Live statistical detectors by memory slot, checkpointed apart (`series_json`)."""
    series: dict[str, Any] = field(default_factory=dict)
    """Checkpointed detector states not turned into live detectors yet (slot -> state dict)."""
    series_dirty: set[str] = field(default_factory=set)
    """Slots whose detector changed since the last `series_json()`."""

    @property
    def seen(self) -> Memory:
        """The `"_seen"` slot (created empty)."""
        slot = self.memory.get(SEEN)
        if slot is None:
            slot = self.memory[SEEN] = {}
        return slot

    def to_dict(self) -> dict[str, Any]:
        return {"m": self.memory, "o": {k: v.to_json() for k, v in self.open.items()},
                "c": self.clock}

    def series_json(self, everything: bool = False) -> dict[str, bytes]:
        """The detector states changed since the last call (or all), as JSON by slot.

        Detector states are larger than the rest and change once per interval, not per record:
        they are checkpointed apart, only when they changed."""
        slots = set(self.detectors) if everything else self.series_dirty
        out = {slot: orjson.dumps(self.detectors[slot].to_state())
               for slot in slots if slot in self.detectors}
        self.series_dirty = set()
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str, series: Mapping[str, bytes] | None = None) -> DeviceState:
        d = orjson.loads(raw)
        return cls(d.get("m", {}), {k: Opened.from_json(v) for k, v in d.get("o", {}).items()},
                   d.get("c", {}), series={k: orjson.loads(v) for k, v in (series or {}).items()})

    def plain_columns(self) -> tuple[int | None, int | None, float | None]:
        """(last_ts µs, last_rx µs, interval_s) for the `detection_state` columns."""
        seen = self.memory.get(SEEN) or {}
        interval = seen.get("interval_s")
        return seen.get("last_ts"), seen.get("last_rx"), (float(interval) if interval else None)
