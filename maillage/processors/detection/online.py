"""The online statistical detector: one number in [0, 1] per reading, from past readings only.

Generic by design: one set of settings for every series (meter power, lamp current, NAB files);
it adapts online to each series' scale (running range), noise (multi-scale smoothing),
weekly rhythm (an hour-of-week profile) and sampling interval (counts in readings, not seconds).

How it scores a reading (docs/detection.md, "Online statistical detector and NAB"):
1. Context vector: exponential moving averages of the value at four time scales (the value
   itself, then smoother and smoother), plus the smoothed residual against an hour-of-week
   profile (what this hour of the week usually looks like).
2. Novelty: L-infinity distance from that vector to the nearest of at most `max_prototypes`
   learned prototypes, in units of the series' running range (an ART-like online clustering:
   a close vector nudges its prototype, a far one becomes a new prototype, replacing the least
   used when full). A vector farther than `vigilance` from every prototype is novel.
3. Score: the distance in vigilance units, scaled so that the novelty boundary sits at
   `1 / novelty_units`, damped while the detector has seen few readings; a value outside the
   running range by more than `range_margin` of it scores 1 (damped). After a firing (a
   novel reading) the next `refractory` scores are capped just below the firing level: one
   event is reported once, which is what an operator (and NAB) wants.

numpy and the standard library only, no I/O; the state is a small JSON-able dict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

DETECTOR_NAME = "maillage"
"""The name under which this detector's results are written (letters and digits)."""

STATE_VERSION = 1

_WEEK_S = 7 * 86400.0
_VISITS_CAP = 10


def _f32(v: float) -> float:
    """`v` rounded to float32, as the compact state keeps it."""
    return float(np.float32(v))


def _short(v: float) -> float:
    """A float32-exact value with the fewest digits that still read back as the same float32."""
    return float(f"{v:.9g}")


@dataclass(frozen=True, slots=True)
class Settings:
    """The detector's settings; the defaults are the ones used for every series."""

    alphas: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03)
    """Smoothing factors of the value's moving averages (1.0 is the value itself)."""
    vigilance: float = 0.1
    """Novelty radius, as a fraction of the series' running range (L-infinity)."""
    max_prototypes: int = 64
    learning_rate: float = 0.05
    """How far a matched prototype moves towards the reading's context."""
    use_decay: float = 0.999
    """Per-reading decay of a prototype's use count (which prototype a new one replaces)."""
    week_slots: int = 168
    """Hour-of-week profile slots."""
    profile_rate: float = 0.2
    """Smallest update rate of a profile slot (faster while the slot is young)."""
    profile_min_visits: int = 2
    residual_rate: float = 0.1
    """Smoothing of the residual against the weekly profile."""
    warmup: int = 60
    """Readings scored 0 while the detector first learns."""
    confidence_readings: float = 500.0
    """Scores are damped by 1 - exp(-n / this): early novelty is less telling."""
    novelty_units: float = 4.0
    """Distance (in vigilance units) that scores 1.0; the novelty boundary scores 1/this."""
    refractory: int = 20
    """Readings after a firing whose score is capped below the firing level."""
    fire_score: float = 0.27
    """A score at or above this fires (and starts the refractory period)."""
    range_margin: float = 0.05
    """A value beyond the running range by more than this fraction of it scores 1 (damped)."""


class OnlineDetector:
    """Scores each reading of one series in [0, 1] from that reading and the past only."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        s = self.settings
        self._dims = len(s.alphas) + 1
        self.n = 0
        self.last_fire = -(10**9)
        self.ema: list[float] = []
        self.lo = 0.0
        self.hi = 0.0
        self.profile = [0.0] * s.week_slots
        self.visits = [0] * s.week_slots
        self.residual = 0.0
        # Prototypes and profile are kept in float32: half the checkpoint, no loss that matters
        # at a tenth of the range; the state holds exactly these values, so resuming is exact.
        self.protos = np.zeros((s.max_prototypes, self._dims), dtype=np.float32)
        self.count = 0
        # Use counts decay lazily: the stored count is as of `use_at` (reading number).
        self.use: list[float] = []
        self.use_at: list[int] = []

    def update(self, ts_s: float, value: float) -> float:
        """Learn from one reading (time in epoch seconds) and return its anomaly score."""
        x = float(value)
        if not math.isfinite(x):
            return 0.0  # nothing to learn from; the caller's quality rules see such values
        s = self.settings
        self.n += 1
        breach = False
        if not self.ema:
            self.ema = [x] * len(s.alphas)
            self.lo = self.hi = x
        else:
            self.ema = [e + a * (x - e) for e, a in zip(self.ema, s.alphas, strict=True)]
            margin = s.range_margin * (self.hi - self.lo)
            breach = margin > 0 and (x > self.hi + margin or x < self.lo - margin)
            if x < self.lo:
                self.lo = x
            elif x > self.hi:
                self.hi = x
        ctx = self.ema + [self._weekly_residual(ts_s)]
        u = np.array(ctx)
        if not self.count:
            self._add(u)
            return 0.0
        span = self.hi - self.lo
        if span <= 1e-12:
            return 0.0  # a constant series so far: nothing is novel yet
        dist = np.abs(self.protos[:self.count] - u).max(axis=1)
        k = int(dist.argmin())
        d = float(dist[k]) / span
        if d > s.vigilance:
            self._add(u)
        else:
            self.protos[k] += s.learning_rate * (u - self.protos[k])
            self.use[k] = _f32(self._use_now(k) + 1.0)
            self.use_at[k] = self.n
        if self.n < s.warmup:
            return 0.0
        confidence = 1.0 - math.exp(-self.n / s.confidence_readings)
        score = min(1.0, d / s.vigilance / s.novelty_units * confidence)
        if breach:
            score = confidence  # a value clearly outside everything seen so far
        if self.n - self.last_fire < s.refractory:
            return min(score, 0.9 * s.fire_score)
        if score >= s.fire_score:
            self.last_fire = self.n
        return score

    def _weekly_residual(self, ts_s: float) -> float:
        """Smoothed difference between the short average and this hour-of-week's profile."""
        s = self.settings
        slot = int((ts_s % _WEEK_S) / _WEEK_S * s.week_slots) % s.week_slots
        v = self.ema[1] if len(self.ema) > 1 else self.ema[0]
        seen = self.visits[slot]
        r = v - self.profile[slot] if seen >= s.profile_min_visits else 0.0
        self.residual += s.residual_rate * (r - self.residual)
        self.profile[slot] = _f32(self.profile[slot] + max(1.0 / (seen + 1), s.profile_rate)
                                  * (v - self.profile[slot]))
        # Past a few visits the rate is constant: capping the count keeps the state short.
        self.visits[slot] = min(seen + 1, _VISITS_CAP)
        return self.residual

    def _use_now(self, k: int) -> float:
        return self.use[k] * self.settings.use_decay ** (self.n - self.use_at[k])

    def _add(self, u: np.ndarray) -> None:
        """Keep `u` as a prototype, replacing the least used one when full."""
        if self.count < self.settings.max_prototypes:
            self.protos[self.count] = u
            self.count += 1
            self.use.append(1.0)
            self.use_at.append(self.n)
            return
        j = min(range(len(self.use)), key=self._use_now)
        self.protos[j] = u
        self.use[j] = 1.0
        self.use_at[j] = self.n

    def to_state(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain JSON-able values."""
        return {"v": STATE_VERSION, "n": self.n, "last_fire": self.last_fire,
                "ema": list(self.ema), "lo": self.lo, "hi": self.hi,
                "profile": [_short(v) for v in self.profile], "visits": list(self.visits),
                "residual": self.residual,
                "protos": [[_short(v) for v in row] for row in self.protos[:self.count].tolist()],
                "use": [_short(v) for v in self.use], "use_at": list(self.use_at)}

    @classmethod
    def from_state(cls, d: dict[str, Any], settings: Settings | None = None) -> OnlineDetector:
        """The detector `to_state` described (a state of another version starts afresh)."""
        det = cls(settings)
        if d.get("v") != STATE_VERSION or len(d.get("profile", ())) != det.settings.week_slots:
            return det
        det.n = int(d["n"])
        det.last_fire = int(d["last_fire"])
        det.ema = [float(v) for v in d["ema"]]
        det.lo = float(d["lo"])
        det.hi = float(d["hi"])
        det.profile = [_f32(v) for v in d["profile"]]  # the float32 each short value stands for
        det.visits = [int(v) for v in d["visits"]]
        det.residual = float(d["residual"])
        protos = np.array(d["protos"], dtype=np.float32).reshape(-1, det._dims)
        det.count = len(protos)
        det.protos[:det.count] = protos
        det.use = [_f32(v) for v in d["use"]]
        det.use_at = [int(v) for v in d["use_at"]]
        return det


def settings_from(overrides: dict[str, Any]) -> Settings:
    """Settings with some fields replaced (robustness checks, experiments)."""
    known = {f.name for f in fields(Settings)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown detector settings: {sorted(unknown)}")
    return Settings(**{**asdict(Settings()), **overrides})
