"""NAB's scoring rules on tiny hand-made series: window reward, false positives, probation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from maillage.eval import nab, nab_scoring

STANDARD, LOW_FP, LOW_FN = nab_scoring.NAB_PROFILES
S_MAX = 2 / (1 + math.exp(-5)) - 1  # NAB's reward at a window's first row, before scaling


def series(n: int, windows: list[tuple[int, int]], key: str = "cat/f.csv") -> nab.Series:
    """A series of n rows five minutes apart with windows given as row ranges."""
    base = np.datetime64("2024-01-01T00:00")
    times = [str(base + np.timedelta64(5 * i, "m")).replace("T", " ") for i in range(n)]
    return nab.Series(key, times, ["1.0"] * n, windows)


def spikes(n: int, rows: dict[int, float]) -> np.ndarray:
    """Scores 0 except at the given rows."""
    out = np.zeros(n)
    for row, score in rows.items():
        out[row] = score
    return out


def test_probation_is_fifteen_percent_capped_at_750_rows() -> None:
    """NAB: min(floor(0.15 n), 0.15 × 5000)."""
    assert nab_scoring.probation_rows(100) == 15
    assert nab_scoring.probation_rows(6) == 0
    assert nab_scoring.probation_rows(4032) == 604
    assert nab_scoring.probation_rows(22695) == 750


def test_scaled_sigmoid_values() -> None:
    """Window start ~0.987, window end 0, one window width after it ~-0.987, -1 from 3 widths on."""
    s = nab_scoring.scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0, 2.99, 3.0, 50.0]))
    assert s[0] == pytest.approx(0.98661, abs=1e-5)
    assert s[1] == pytest.approx(0.84828, abs=1e-5)
    assert s[2] == 0.0
    assert s[3] == pytest.approx(-0.98661, abs=1e-5)
    assert -1.0 < s[4] < -0.999
    assert s[5] == s[6] == -1.0


def test_detection_at_window_start_scores_100() -> None:
    """The first row of the only window earns exactly tp: a perfect detector."""
    s = series(100, [(40, 49)])
    for profile in nab_scoring.NAB_PROFILES:
        r = nab_scoring.score_profile([s], [spikes(100, {40: 1.0})], profile)
        assert r.raw == pytest.approx(profile.tp_weight)
        assert r.score == pytest.approx(100.0)
        assert (r.detected, r.missed, r.false_positives) == (1, 0, 0)
        assert r.threshold == 1.0


def test_detection_at_window_end_earns_little() -> None:
    """The last row of a 10-row window is at relative position -0.1: S(-0.1)/S(-1) of tp."""
    s = series(100, [(40, 49)])
    r = nab_scoring.score_profile([s], [spikes(100, {49: 1.0})], STANDARD)
    expected = (2 / (1 + math.exp(-0.5)) - 1) / S_MAX
    assert r.raw == pytest.approx(expected)
    assert r.score == pytest.approx(100 * (expected + 1) / 2)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    """A window is rewarded once, for its earliest detection; later ones add nothing."""
    s = series(100, [(40, 49)])
    once = nab_scoring.score_profile([s], [spikes(100, {42: 1.0})], STANDARD)
    more = nab_scoring.score_profile([s], [spikes(100, {42: 1.0, 45: 1.0, 49: 1.0})], STANDARD)
    assert more.raw == pytest.approx(once.raw)
    assert once.raw == pytest.approx((2 / (1 + math.exp(-5 * 0.8)) - 1) / S_MAX)


def test_false_positive_just_after_a_window() -> None:
    """One row after a 10-row window: fp × S(1/9); far after (3 widths on): the full -fp."""
    s = series(200, [(40, 49)])
    near = nab_scoring.score_profile([s], [spikes(200, {40: 1.0, 50: 1.0})], STANDARD)
    assert near.raw == pytest.approx(1.0 + 0.11 * (2 / (1 + math.exp(5 / 9)) - 1))
    assert near.false_positives == 1
    far = nab_scoring.score_profile([s], [spikes(200, {40: 1.0, 49 + 27: 1.0})], STANDARD)
    assert far.raw == pytest.approx(1.0 - 0.11)
    low_fp = nab_scoring.score_profile([s], [spikes(200, {40: 1.0, 49 + 27: 1.0})], LOW_FP)
    assert low_fp.raw == pytest.approx(1.0 - 0.22)


def test_false_positive_before_any_window_costs_fp() -> None:
    """A detection after probation but before the first window costs the whole fp weight."""
    s = series(100, [(60, 69)])
    r = nab_scoring.score_profile([s], [spikes(100, {20: 1.0, 60: 1.0})], STANDARD)
    assert r.raw == pytest.approx(1.0 - 0.11)


def test_detection_in_probation_is_ignored() -> None:
    """Rows in the first 15 % neither cost nor earn anything."""
    s = series(100, [(40, 49)])
    r = nab_scoring.score_profile([s], [spikes(100, {0: 1.0, 14: 1.0, 40: 1.0})], STANDARD)
    assert r.raw == pytest.approx(1.0)
    assert r.false_positives == 0
    counted = nab_scoring.score_profile([s], [spikes(100, {15: 1.0, 40: 1.0})], STANDARD)
    assert counted.raw == pytest.approx(1.0 - 0.11)


def test_missed_window_costs_fn() -> None:
    """No detection: -fn per window, the null detector's score: 0 after normalisation."""
    s = series(100, [(40, 49), (70, 79)])
    for profile in nab_scoring.NAB_PROFILES:
        r = nab_scoring.score_profile([s], [np.zeros(100)], profile)
        assert r.raw == pytest.approx(-2 * profile.fn_weight)
        assert r.score == pytest.approx(0.0)
        assert r.missed == 2
    half = nab_scoring.score_profile([s], [spikes(100, {40: 1.0})], LOW_FN)
    assert half.raw == pytest.approx(1.0 - 2.0)
    assert half.score == pytest.approx(100 * (-1.0 + 4.0) / (2.0 + 4.0))


def test_file_without_windows_only_costs() -> None:
    """Alone it scores 0 whatever fires; beside a labelled file its detections cost fp each."""
    quiet = series(100, [], key="cat/quiet.csv")
    alone = nab_scoring.score_profile([quiet], [spikes(100, {50: 1.0})], STANDARD)
    assert (alone.raw, alone.score, alone.threshold > 1.0) == (0.0, 0.0, True)
    labelled = series(100, [(40, 49)])
    both = nab_scoring.score_profile([labelled, quiet], [spikes(100, {40: 0.9}), spikes(100, {50: 0.9})],
                             STANDARD)
    assert both.raw == pytest.approx(1.0 - 0.11)
    assert both.score == pytest.approx(100 * (2.0 - 0.11) / 2.0)


def test_threshold_is_optimised_over_the_folder() -> None:
    """A lower threshold that finds a second window but fires often elsewhere is not taken."""
    a = series(200, [(40, 49)], key="cat/a.csv")
    b = series(200, [(100, 109)], key="cat/b.csv")
    noisy_rows = {r: 0.5 for r in range(150, 200)}  # 50 far false positives at 0.5
    scores = [spikes(200, {40: 0.9}), spikes(200, {100: 0.5, **noisy_rows})]
    r = nab_scoring.score_profile([a, b], scores, STANDARD)
    assert r.threshold == 0.9
    assert r.raw == pytest.approx(1.0 - 1.0)
    assert (r.detected, r.missed, r.false_positives) == (1, 1, 0)
    # With fewer false positives, the same lower threshold pays: 2 windows - 5 × 0.11.
    few = [spikes(200, {40: 0.9}), spikes(200, {100: 0.5, 150: 0.5, 160: 0.5, 170: 0.5,
                                                 180: 0.5, 190: 0.5})]
    r = nab_scoring.score_profile([a, b], few, STANDARD)
    assert r.threshold == 0.5
    assert r.raw == pytest.approx(2.0 - 5 * 0.11)


def reference_raw(all_series: list[nab.Series], all_scores: list[np.ndarray],
                  profile: nab_scoring.CostProfile, threshold: float) -> float:
    """NAB's rules written out row by row: the raw score at one threshold (slow, plain)."""
    def s(x: float) -> float:
        return -1.0 if x >= 3.0 else 2 / (1 + math.exp(5 * x)) - 1

    total = 0.0
    for ser, sc in zip(all_series, all_scores, strict=True):
        start = nab_scoring.probation_rows(len(sc))
        for first, last in ser.windows:
            hits = [i for i in range(max(first, start), last + 1) if sc[i] >= threshold]
            width = last - first + 1
            total += (profile.tp_weight * s(-(last - hits[0] + 1) / width) / S_MAX if hits
                      else -profile.fn_weight)
        for i in range(start, len(sc)):
            if sc[i] < threshold or any(a <= i <= b for a, b in ser.windows):
                continue
            before = [(a, b) for a, b in ser.windows if b < i]
            if not before:
                total -= profile.fp_weight
            else:
                a, b = before[-1]
                total += profile.fp_weight * s((i - b) / (b - a))
    return total


@pytest.mark.parametrize("seed", range(5))
def test_sweep_equals_rules_at_every_threshold(seed: int) -> None:
    """The vectorised sweep gives, at every threshold, what the rules give row by row."""
    rng = random.Random(seed)
    all_series, all_scores = [], []
    for f in range(3):
        n = rng.randint(60, 160)
        windows, row = [], rng.randint(n // 5, n // 3)
        while row + 12 < n and len(windows) < f + 1:
            width = rng.randint(3, 12)
            windows.append((row, row + width - 1))
            row += width + rng.randint(1, 30)
        all_series.append(series(n, windows, key=f"cat/f{f}.csv"))
        # Rounded scores make ties, which must fire together.
        all_scores.append(np.round(np.array([rng.random() for _ in range(n)]), 2))
    for profile in nab_scoring.NAB_PROFILES:
        sw = nab_scoring.sweep(all_series, all_scores, profile)
        assert np.all(np.diff(sw.thresholds) < 0)
        assert sw.raws[0] == pytest.approx(-profile.fn_weight * sw.windows)
        for threshold, raw in zip(sw.thresholds[1:], sw.raws[1:], strict=True):
            assert raw == pytest.approx(reference_raw(all_series, all_scores, profile, threshold))
        best = nab_scoring.score_profile(all_series, all_scores, profile)
        assert best.raw == pytest.approx(float(np.max(sw.raws)))


def test_window_rows_follow_nab_when_time_steps_back() -> None:
    """Windows are found by timestamp in file order, even where the clock steps back once."""
    times = np.array(["2024-01-01T00:00", "2024-01-01T01:00", "2024-01-01T02:00",
                      "2024-01-01T01:30", "2024-01-01T03:00", "2024-01-01T04:00"],
                     dtype="datetime64[us]")
    assert nab.window_rows(times, [("2024-01-01 03:00:00.000000", "2024-01-01 04:00:00")], "t") \
        == [(4, 5)]
    assert nab.window_rows(times, [("2024-01-01 00:30", "2024-01-01 02:30")], "t") == [(1, 3)]
    with pytest.raises(nab.NabError, match="holds no row"):
        nab.window_rows(times, [("2024-01-01 00:10", "2024-01-01 00:20")], "t")
    with pytest.raises(nab.NabError, match="overlap"):
        nab.window_rows(times, [("2024-01-01 00:00", "2024-01-01 02:00"),
                                ("2024-01-01 01:00", "2024-01-01 04:00")], "t")


class _Constant:
    def __init__(self, score: float) -> None:
        self.score = score

    def update(self, ts_s: float, value: float) -> float:
        return self.score


def test_run_detector_refuses_scores_outside_0_1() -> None:
    """A detector breaking the contract is named with the file and row, not scored."""
    s = series(10, [])
    assert np.array_equal(nab.run_detector(s, lambda: _Constant(0.25)), np.full(10, 0.25))
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(nab.NabError, match="cat/f.csv row 1"):
            nab.run_detector(s, lambda b=bad: _Constant(b))
