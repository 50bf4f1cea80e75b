"""The NAB scorer against NAB itself: ARTime's published results must score as published."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from maillage.eval import nab, nab_scoring

# CI runs on a fresh clone with the read-only `shared/` folder beside it.
SHARED_NAB = Path(__file__).resolve().parents[2].parent / "shared" / "nab"
ARTIME = SHARED_NAB / "results" / "ARTime"

# ARTime on exactly these 25 files, NAB's own scorer (shared/nab/README.md).
PUBLISHED = {"standard": 74.6, "reward_low_FP_rate": 67.0, "reward_low_FN_rate": 79.6}


@pytest.fixture(scope="module")
def artime() -> tuple[nab.Corpus, list[np.ndarray]]:
    """ARTime's results, labelled from combined_windows.json, with the folder's profiles."""
    assert ARTIME.is_dir(), f"{ARTIME} missing: clone with shared/ beside the repository"
    profiles = nab.load_profiles(SHARED_NAB / "config" / "profiles.json")
    return nab.labelled_results(ARTIME, SHARED_NAB / "labels" / "combined_windows.json", profiles)


def test_artime_scores_as_published(artime: tuple[nab.Corpus, list[np.ndarray]]) -> None:
    """Standard 74.6, reward-low-FP 67.0, reward-low-FN 79.6, to ±0.1, in a few seconds."""
    corpus, scores = artime
    assert len(corpus.series) == 25 and corpus.windows == 39
    began = time.perf_counter()
    results = {r.profile: r for r in nab.score_corpus(corpus, scores)}
    elapsed = time.perf_counter() - began
    assert set(results) == set(PUBLISHED)
    for name, expected in PUBLISHED.items():
        assert results[name].score == pytest.approx(expected, abs=0.1), name
        assert results[name].detected + results[name].missed == 39
    # The threshold sweep over ~130,000 rows is vectorised; generous bound for a loaded machine.
    assert elapsed < 10.0


def test_builtin_profiles_are_nabs(artime: tuple[nab.Corpus, list[np.ndarray]]) -> None:
    """NAB's profiles.json holds exactly the built-in profiles, used when a folder has none."""
    corpus, scores = artime
    assert nab.load_profiles(SHARED_NAB / "config" / "profiles.json") == nab_scoring.NAB_PROFILES
    assert nab.load_profiles(SHARED_NAB / "config" / "absent.json") == nab_scoring.NAB_PROFILES


def test_row_weights_and_labels_match_nabs_columns(artime: tuple[nab.Corpus, list[np.ndarray]]) -> None:
    """Per row, the weight of a detection equals NAB's S(t) column, and the labels NAB's label."""
    corpus, _ = artime
    columns = ("label", "S(t)_standard", "S(t)_reward_low_FP_rate", "S(t)_reward_low_FN_rate")
    for series in corpus.series:
        path = nab.result_path(ARTIME.parent, "ARTime", series.key)
        label, *weights = nab.read_columns(path, columns)
        assert np.array_equal(np.array(label, dtype=int), series.labels()), series.key
        for profile, column in zip(corpus.profiles, weights, strict=True):
            ours = nab_scoring.row_weights(len(series.timestamps), series.windows, profile)
            assert np.allclose(ours, np.array(column, dtype=float), atol=1e-6), (series.key, profile)


def test_data_folder_reads_like_the_results(artime: tuple[nab.Corpus, list[np.ndarray]]) -> None:
    """The data folder gives the same files, rows and windows as ARTime's results."""
    corpus, _ = artime
    data = nab.read_corpus(SHARED_NAB)
    assert [s.key for s in data.series] == [s.key for s in corpus.series]
    for ours, theirs in zip(data.series, corpus.series, strict=True):
        assert ours.timestamps == theirs.timestamps
        assert ours.windows == theirs.windows
    # One real file steps back an hour once: its windows are still found by timestamp.
    machine = next(s for s in data.series if s.key.endswith("machine_temperature_system_failure.csv"))
    assert len(machine.windows) == 4
    assert machine.timestamps[machine.windows[2][0]].startswith("2014-01-27 14:20")


def test_per_file_scores_add_up(artime: tuple[nab.Corpus, list[np.ndarray]]) -> None:
    """Each file's share at the chosen threshold sums to the folder's raw score and counts."""
    corpus, scores = artime
    for result, profile in zip(nab.score_corpus(corpus, scores), corpus.profiles, strict=True):
        shares = [nab_scoring.score_file(s, sc, profile, result.threshold)
                  for s, sc in zip(corpus.series, scores, strict=True)]
        assert sum(f["raw"] for f in shares) == pytest.approx(result.raw)
        assert sum(f["detected"] for f in shares) == result.detected
        assert sum(f["missed"] for f in shares) == result.missed
        assert sum(f["false_positives"] for f in shares) == result.false_positives
