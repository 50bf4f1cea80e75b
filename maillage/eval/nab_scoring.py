"""NAB's scoring rules (the Numenta Anomaly Benchmark), written anew from NAB 1.x's sweeper,
optimiser and normalisation; `nab.py` reads folders and runs detectors, this module only scores.

- each row gets the weight a detection there would earn: inside a window
  `tp * S(-(end - i + 1) / width) / S(-1)` (so the window's first row earns exactly `tp`),
  after a window `fp * S((i - end) / (width - 1))` with S = -1 from 3 window widths on, before
  any window `-fp`; S(x) = 2 / (1 + exp(5x)) - 1 is NAB's scaled sigmoid;
- rows in the probationary period (min(floor(0.15 n), 0.15 × 5000) first rows) are ignored;
- at a threshold t, a row with score >= t is a detection: each window counts its earliest
  detection once, or `-fn` when it has none, and every detection outside windows adds its weight;
- t is swept over every distinct score of the whole folder at once and the best raw total kept,
  per profile; the reported score is 100 × (raw - null) / (perfect - null), where the null
  detector finds nothing (-fn per window) and the perfect one finds each window at its first
  row (+tp per window).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

PROBATION_FRACTION = 0.15
PROBATION_BASE_ROWS = 5000  # NAB caps the probation at 15 % of 5,000 rows for long files
FAR_AFTER_WINDOW = 3.0  # relative distance after a window from which a FP costs the full weight


@dataclass(frozen=True)
class CostProfile:
    """One NAB application profile: the weights of true positives, false positives, misses."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


NAB_PROFILES = (
    CostProfile("standard", 1.0, 0.11, 1.0),
    CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)
"""NAB's three profiles (its `config/profiles.json`), used when a folder has none."""



class Labelled(Protocol):
    """A file as the scorer needs it: its key and its windows as inclusive row ranges."""

    key: str
    windows: list[tuple[int, int]]


def probation_rows(n: int) -> int:
    """How many first rows of an n-row file NAB ignores (its probationary period)."""
    return int(min(math.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * PROBATION_BASE_ROWS))


def scaled_sigmoid(x: np.ndarray | float) -> np.ndarray:
    """NAB's reward curve: 2·sigmoid(-5x) - 1, and -1 from FAR_AFTER_WINDOW on."""
    x = np.asarray(x, dtype=float)
    return np.where(x >= FAR_AFTER_WINDOW, -1.0, 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0)


def row_weights(n: int, windows: Sequence[tuple[int, int]], profile: CostProfile) -> np.ndarray:
    """What a detection at each row would add (NAB's per-row sweep score)."""
    rows = np.arange(n, dtype=float)
    out = np.full(n, -profile.fp_weight)  # before the first window: a plain false positive
    max_tp = float(scaled_sigmoid(-1.0))
    for k, (start, end) in enumerate(windows):
        width = end - start + 1
        out[start:end + 1] = (scaled_sigmoid(-(end - rows[start:end + 1] + 1) / width)
                              * profile.tp_weight / max_tp)
        stop = windows[k + 1][0] if k + 1 < len(windows) else n
        # A one-row window has no width to scale by; count distance in rows then.
        after = (rows[end + 1:stop] - end) / max(width - 1, 1)
        out[end + 1:stop] = scaled_sigmoid(after) * profile.fp_weight
    return out


@dataclass(frozen=True)
class ProfileScore:
    """The best threshold of one profile over a folder and what it scores."""

    profile: str
    score: float  # normalised: null detector 0, perfect detector 100
    raw: float
    null: float
    perfect: float
    threshold: float
    detected: int  # windows with at least one detection
    missed: int
    false_positives: int  # detections outside windows, after probation

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Sweep:
    """The raw NAB score at every distinct threshold over a folder, highest threshold first."""

    thresholds: np.ndarray  # the first one fires nowhere
    raws: np.ndarray
    false_positives: np.ndarray
    detected: np.ndarray  # windows detected
    windows: int  # windows scored (not inside the probationary period)


def sweep(series: Sequence[Labelled], scores: Sequence[np.ndarray], profile: CostProfile) -> Sweep:
    """Lower the threshold through every score of the folder at once, as NAB's sweeper does."""
    parts_s, parts_w, parts_id = [np.empty(0)], [np.empty(0)], [np.empty(0, dtype=np.int64)]
    n_windows = 0
    for s, sc in zip(series, scores, strict=True):
        n = len(sc)
        start = probation_rows(n)
        wid = np.full(n, -1, dtype=np.int64)
        for first, last in s.windows:
            if last < start:
                log.warning("%s: a window lies in the probationary period, not scored", s.key)
                continue
            wid[first:last + 1] = n_windows
            n_windows += 1
        parts_s.append(np.asarray(sc, dtype=float)[start:])
        parts_w.append(row_weights(n, s.windows, profile)[start:])
        parts_id.append(wid[start:])
    all_s = np.concatenate(parts_s)
    order = np.argsort(-all_s, kind="stable")
    ranked, weight, wid = all_s[order], np.concatenate(parts_w)[order], np.concatenate(parts_id)[order]
    # Each row's change of the total when the threshold drops to its score: its weight for a
    # false positive; for a window row, how much it raises the window's best (earliest) detection.
    delta = np.where(wid < 0, weight, 0.0)
    first_hit = np.zeros(len(ranked), dtype=np.int64)
    for k in range(n_windows):
        at = np.flatnonzero(wid == k)
        delta[at] = np.diff(np.maximum.accumulate(weight[at]), prepend=-profile.fn_weight)
        first_hit[at[0]] = 1
    base = -profile.fn_weight * n_windows
    # Rows with equal scores fire together: keep the state after the last row of each run.
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], len(ranked) > 0])
    never = max(1.1, float(np.nextafter(ranked[0], np.inf))) if len(ranked) else 1.1
    return Sweep(thresholds=np.r_[never, ranked[ends]],
                 raws=np.r_[base, (base + np.cumsum(delta))[ends]],
                 false_positives=np.r_[0, np.cumsum(wid < 0)[ends]],
                 detected=np.r_[0, np.cumsum(first_hit)[ends]],
                 windows=n_windows)


def score_profile(series: Sequence[Labelled], scores: Sequence[np.ndarray], profile: CostProfile
                  ) -> ProfileScore:
    """The NAB score of one profile with its threshold optimised over all files together."""
    sw = sweep(series, scores, profile)
    best = int(np.argmax(sw.raws))  # first of equal maxima: the highest threshold, as NAB keeps
    null = -profile.fn_weight * sw.windows
    perfect = profile.tp_weight * sw.windows
    raw = float(sw.raws[best])
    score = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    detected = int(sw.detected[best])
    return ProfileScore(profile.name, score, raw, null, perfect, float(sw.thresholds[best]),
                        detected, sw.windows - detected, int(sw.false_positives[best]))


def score_file(series: Labelled, scores: np.ndarray, profile: CostProfile, threshold: float
               ) -> dict[str, float | int]:
    """One file's share of a profile's raw score at a given threshold, and its counts."""
    start = probation_rows(len(scores))
    weights = row_weights(len(scores), series.windows, profile)
    fired = np.asarray(scores) >= threshold
    fired[:start] = False
    raw, detected = 0.0, 0
    outside = fired.copy()
    for first, last in series.windows:
        if last < start:
            continue
        hits = np.flatnonzero(fired[first:last + 1])
        raw += float(weights[first + hits[0]]) if hits.size else -profile.fn_weight
        detected += int(hits.size > 0)
        outside[first:last + 1] = False
    raw += float(weights[outside].sum())
    return {"raw": raw, "detected": detected,
            "missed": sum(1 for _, last in series.windows if last >= start) - detected,
            "false_positives": int(outside.sum())}
