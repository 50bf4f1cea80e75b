"""Injected anomalies: the plan (which device, what, when) and its ground-truth labels file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from maillage.simulators.payloads import iso


@dataclass(frozen=True, slots=True)
class Injection:
    """One anomaly injected on one device over [start, end)."""

    device_id: str
    kind: str
    start: datetime
    end: datetime
    params: dict[str, float] = field(default_factory=dict)

    def active(self, t: datetime) -> bool:
        return self.start <= t < self.end

    def label(self, tenant: str) -> dict[str, object]:
        """The labels-file record of this anomaly."""
        return {"tenant": tenant, "device_id": self.device_id, "kind": self.kind,
                "start": iso(self.start), "end": iso(self.end), "params": self.params}


def active(injections: list[Injection], kind: str, t: datetime) -> Injection | None:
    """The injection of `kind` active at t, if any."""
    for inj in injections:
        if inj.kind == kind and inj.start <= t < inj.end:
            return inj
    return None
