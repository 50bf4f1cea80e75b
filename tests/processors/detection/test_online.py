"""The online statistical detector: bounds, no look-ahead, what it finds, exact resume, size."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from maillage.processors.detection.online import (
    DETECTOR_NAME,
    OnlineDetector,
    Settings,
    settings_from,
)

T0 = 1_790_000_000.0  # epoch seconds
STEP = 300.0  # five-minute readings


def noisy_daily(n: int, seed: int = 7) -> np.ndarray:
    """A daily rhythm (288 readings a day) with Gaussian noise, as a meter or sensor shows."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    return 100.0 + 20.0 * np.sin(2 * np.pi * i / 288) + rng.normal(0.0, 3.0, n)


def scores_of(values: np.ndarray, det: OnlineDetector | None = None, start: int = 0) -> np.ndarray:
    det = det or OnlineDetector()
    return np.array([det.update(T0 + STEP * (start + i), float(v)) for i, v in enumerate(values)])


def test_name_is_letters_and_digits() -> None:
    """NAB writes results under the detector's name."""
    assert re.fullmatch(r"[A-Za-z0-9]+", DETECTOR_NAME)


@pytest.mark.parametrize("kind", ["noisy", "constant", "steps", "huge", "negative", "spiky"])
def test_scores_stay_in_unit_interval(kind: str) -> None:
    """Whatever the series, every score is a finite number in [0, 1]."""
    rng = np.random.default_rng(1)
    n = 2500
    series = {
        "noisy": noisy_daily(n),
        "constant": np.full(n, 42.0),
        "steps": np.repeat(rng.integers(0, 5, n // 50).astype(float), 50),
        "huge": rng.normal(1e12, 1e9, n),
        "negative": -rng.exponential(3.0, n),
        "spiky": np.where(rng.random(n) < 0.01, 1e6, rng.normal(0.0, 1.0, n)),
    }[kind]
    s = scores_of(series)
    assert np.all(np.isfinite(s))
    assert s.min() >= 0.0 and s.max() <= 1.0


def test_non_finite_values_are_ignored() -> None:
    """NaN and infinities score 0 and leave the state as it was."""
    det = OnlineDetector()
    scores_of(noisy_daily(800), det)
    before = json.dumps(det.to_state())
    for bad in (math.nan, math.inf, -math.inf):
        assert det.update(T0 + STEP * 800, bad) == 0.0
    assert json.dumps(det.to_state()) == before


def test_no_look_ahead() -> None:
    """The score at t depends on readings up to t only: changing later readings changes nothing."""
    base = noisy_daily(2000)
    other = base.copy()
    other[1200:] = np.random.default_rng(99).normal(500.0, 50.0, 800)
    a, b = scores_of(base), scores_of(other)
    np.testing.assert_array_equal(a[:1200], b[:1200])
    assert not np.array_equal(a[1200:], b[1200:])  # the change itself is seen


def test_spike_and_level_shift_score_high_steady_part_low() -> None:
    """A spike and a lasting level shift fire; the steady noisy rhythm stays below firing."""
    v = noisy_daily(3000)
    v[2000] += 80.0  # a spike of ~27 noise standard deviations
    v[2500:] += 60.0  # the level moves up and stays
    s = scores_of(v)
    fire = Settings().fire_score
    steady = s[600:2000]  # after the first learning
    assert steady.max() < fire
    assert np.percentile(steady, 99) < 0.8 * fire
    assert s[2000] >= 0.9
    assert s[2500:2505].max() >= 2 * fire


def test_repeated_pattern_is_learned() -> None:
    """A spike once a day is novel the first times only: later ones score low."""
    v = noisy_daily(288 * 10, seed=3)
    v[144 + 288 * 2::288] += 80.0  # from the third day on
    s = scores_of(v)
    first, last = s[144 + 288 * 2], s[144 + 288 * 9]
    assert first >= Settings().fire_score
    assert last < first / 2


def test_state_round_trip_through_json_resumes_exactly() -> None:
    """Checkpoint half-way through JSON, resume: the second half scores identically."""
    v = noisy_daily(4000, seed=11)
    v[3000:3040] -= 50.0
    whole = scores_of(v)
    det = OnlineDetector()
    first = scores_of(v[:2000], det)
    state = json.loads(json.dumps(det.to_state()))
    resumed = OnlineDetector.from_state(state)
    second = scores_of(v[2000:], resumed, start=2000)
    np.testing.assert_array_equal(np.r_[first, second], whole)


def test_repeated_checkpoints_change_nothing() -> None:
    """A processor restarted every 250 readings scores exactly as one that never stopped."""
    rng = np.random.default_rng(12)
    v = np.cumsum(rng.normal(0.0, 1.0, 3000)) * 7.3 + 1e6  # large values, long decimals
    whole = scores_of(v)
    out: list[float] = []
    det = OnlineDetector()
    for start in range(0, len(v), 250):
        out.extend(scores_of(v[start:start + 250], det, start=start))
        det = OnlineDetector.from_state(json.loads(json.dumps(det.to_state())))
        assert det.to_state() == json.loads(json.dumps(det.to_state()))
    np.testing.assert_array_equal(np.array(out), whole)


def test_state_of_another_version_starts_afresh() -> None:
    det = OnlineDetector()
    scores_of(noisy_daily(500), det)
    state = det.to_state() | {"v": -1}
    assert OnlineDetector.from_state(state).n == 0


def test_state_stays_bounded() -> None:
    """A long wandering series keeps a bounded, JSON-able state of plain numbers."""
    rng = np.random.default_rng(5)
    walk = np.cumsum(rng.normal(0.0, 1.0, 30_000)) + rng.normal(0.0, 5.0, 30_000)
    det = OnlineDetector()
    sizes = []
    for i, v in enumerate(walk):
        det.update(T0 + STEP * i, float(v))
        if i % 5000 == 4999:
            sizes.append(len(json.dumps(det.to_state())))
    settings = Settings()
    assert len(det.to_state()["protos"]) == settings.max_prototypes
    assert max(sizes) < 10_000
    assert sizes[-1] <= sizes[1] * 1.1  # no growth with the series' length


def test_settings_from_refuses_unknown_names() -> None:
    assert settings_from({"vigilance": 0.13}).vigilance == 0.13
    with pytest.raises(ValueError):
        settings_from({"vigilence": 0.13})
