"""The online statistical detector (`online.py`) on the numeric series no rule judges as a whole.

Which series: a meter's and a cabinet's active power (the load a person would look at). To keep
the processor's cost small the detector does not see every reading: each series is averaged
over `BUCKET_US` of measurement time and the detector scores each closed interval's mean.
An `unusual_value` anomaly (info) opens when an interval scores `OPEN_SCORE` or more (well above
the detector's own firing level: a quarter-hour mean that far from anything the series showed)
and closes after `CALM_INTERVALS` intervals in a row scored below `CLOSE_SCORE`. The detector
reports one event once (its scores are capped for a while after a firing), so the anomaly marks
when the series left its usual behaviour, not how long it stayed away.
"""

from __future__ import annotations

import logging
from typing import Any

from maillage.envelope import Envelope
from maillage.processors.detection.model import DeviceInfo, Finding, Kind, Severity

log = logging.getLogger(__name__)

SERIES: dict[str, tuple[str, ...]] = {"meter": ("active_power_w",),
                                      "lighting_cabinet": ("active_power_w",)}
BUCKET_US = 900_000_000
"""15 minutes: the detector sees one mean per series and quarter hour (the rollups' bucket)."""
OPEN_SCORE = 0.6
CLOSE_SCORE = 0.27
"""The detector's firing level (`online.Settings.fire_score`)."""
CALM_INTERVALS = 4


def _detector_class() -> Any:
    try:
        from maillage.processors.detection.online import OnlineDetector
    except ImportError:
        log.warning("the online statistical detector is not available: no unusual_value anomalies")
        return None
    return OnlineDetector


class Online:
    """Feeds interval means to one detector per series; says when a series is unusual."""

    def __init__(self, detector_class: Any = None) -> None:
        self.cls = detector_class if detector_class is not None else _detector_class()

    def _detector(self, st: Any, slot: str) -> Any:
        det = st.detectors.get(slot)
        if det is None:
            saved = st.series.pop(slot, None)
            det = self.cls.from_state(saved) if saved is not None else self.cls()
            st.detectors[slot] = det
        return det

    def feed(self, device: DeviceInfo, st: Any, env: Envelope) -> list[Finding]:
        """Findings of one in-order reading (none until an interval closes)."""
        metrics = SERIES.get(device.type)
        if not metrics or self.cls is None:
            return []
        out: list[Finding] = []
        for metric in metrics:
            value = env.values.get(metric)
            if value is None:
                continue
            slot = f"online:{metric}"
            mem = st.memory.get(slot)
            if mem is None:
                mem = st.memory[slot] = {}
            bucket = env.ts_us // BUCKET_US
            cur = mem.get("b")
            if cur is None or bucket < cur:
                mem.update(b=bucket, s=value, n=1)
                continue
            if bucket == cur:
                mem["s"] += value
                mem["n"] += 1
                continue
            mean = mem["s"] / mem["n"]
            end_us = (cur + 1) * BUCKET_US
            score = float(self._detector(st, slot).update(end_us / 1e6, mean))
            st.series_dirty.add(slot)
            mem.update(b=bucket, s=value, n=1)
            calm = mem.get("calm", 0) + 1 if score < CLOSE_SCORE else 0
            mem["calm"] = calm
            evidence = {"metric": metric, "interval_mean": round(mean, 3),
                        "score": round(score, 3), "interval_s": BUCKET_US // 1_000_000,
                        "open_score": OPEN_SCORE}
            if score >= OPEN_SCORE:
                out.append(Finding(Kind.UNUSUAL_VALUE, True, end_us, Severity.INFO, score, evidence))
            elif calm >= CALM_INTERVALS:
                out.append(Finding(Kind.UNUSUAL_VALUE, False, end_us, Severity.INFO, score, evidence))
        return out
