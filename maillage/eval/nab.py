"""NAB, the Numenta Anomaly Benchmark: read a NAB-layout folder, run an online detector over it,
write NAB-layout results and score them by NAB's rules.

Layout read: `data/<category>/<file>.csv` (`timestamp,value`), `labels/combined_windows.json`
(`{"<category>/<file>.csv": [[start, end], …]}`), optionally `config/profiles.json`.
Layout written: `OUT/<detector>/<category>/<detector>_<file>.csv` with
`timestamp,value,anomaly_score,label`, one row per data row.

NAB's scoring rules, the threshold sweep and the normalisation are in `nab_scoring.py`.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from maillage.errors import MaillageError
from maillage.eval.nab_scoring import NAB_PROFILES, CostProfile, ProfileScore, score_profile

log = logging.getLogger(__name__)

WINDOWS_FILE = Path("labels") / "combined_windows.json"
PROFILES_FILE = Path("config") / "profiles.json"
DETECTOR_NAME_RE = re.compile(r"^[A-Za-z0-9]+$")


class NabError(MaillageError):
    """A folder, results file or detector that does not follow NAB's layout or contract."""


class OnlineScorer(Protocol):
    """What the runner needs of a detector: one anomaly score in [0, 1] per row, in order."""

    def update(self, ts_s: float, value: float) -> float: ...


DetectorFactory = Callable[[], OnlineScorer]


@dataclass
class Series:
    """One NAB file: its rows as read (text kept for writing back) and its windows as row ranges."""

    key: str  # "<category>/<file>.csv", as in combined_windows.json
    timestamps: list[str]
    values: list[str]
    windows: list[tuple[int, int]]  # inclusive row indexes, sorted, not overlapping

    @property
    def category(self) -> str:
        """The folder the file sits in."""
        return self.key.rsplit("/", 1)[0]

    @property
    def filename(self) -> str:
        """The file's name, e.g. `nyc_taxi.csv`."""
        return self.key.rsplit("/", 1)[1]

    def labels(self) -> np.ndarray:
        """1 for rows inside a window, else 0."""
        out = np.zeros(len(self.timestamps), dtype=np.int8)
        for start, end in self.windows:
            out[start:end + 1] = 1
        return out


@dataclass(frozen=True)
class Corpus:
    """A NAB-layout folder: its series (sorted by key) and its cost profiles."""

    root: Path
    series: list[Series]
    profiles: tuple[CostProfile, ...]

    @property
    def rows(self) -> int:
        """Data rows over all files."""
        return sum(len(s.timestamps) for s in self.series)

    @property
    def windows(self) -> int:
        """Anomaly windows over all files."""
        return sum(len(s.windows) for s in self.series)


# ---------------------------------------------------------------- reading and writing


def load_profiles(path: Path) -> tuple[CostProfile, ...]:
    """Profiles from a NAB `profiles.json`, or NAB's three when the file does not exist."""
    if not path.is_file():
        return NAB_PROFILES
    try:
        doc = json.loads(path.read_text())
        return tuple(CostProfile(name, float(p["CostMatrix"]["tpWeight"]),
                                 float(p["CostMatrix"]["fpWeight"]),
                                 float(p["CostMatrix"]["fnWeight"]))
                     for name, p in doc.items())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NabError(f"{path}: not a NAB profiles file ({exc})") from exc


def load_windows(path: Path) -> dict[str, list[tuple[str, str]]]:
    """`combined_windows.json`: file key -> list of (start, end) timestamps as text."""
    try:
        doc = json.loads(path.read_text())
        return {key: [(str(a), str(b)) for a, b in wins] for key, wins in doc.items()}
    except FileNotFoundError as exc:
        raise NabError(f"{path} not found: not a NAB folder (labels/combined_windows.json)") from exc
    except (ValueError, TypeError, AttributeError) as exc:
        raise NabError(f"{path}: not a NAB windows file ({exc})") from exc


def parse_times(texts: Sequence[str], where: str) -> np.ndarray:
    """NAB timestamps (local, no zone, e.g. `2014-04-01 00:05:00[.000000]`) as datetime64[us]."""
    try:
        return np.array([t.strip().replace(" ", "T", 1) for t in texts], dtype="datetime64[us]")
    except ValueError as exc:
        raise NabError(f"{where}: bad timestamp ({exc})") from exc


def window_rows(times: np.ndarray, limits: Sequence[tuple[str, str]], where: str
                ) -> list[tuple[int, int]]:
    """Each window's first and last row (inclusive), found as NAB does.

    NAB finds the rows whose timestamps equal the window's limits; a few real files step back in
    time once (a clock change), so rows are searched in file order, not by bisection: the first
    row at or after the start, then the first row equal to the end (else the row before the
    first one past it).
    """
    rows: list[tuple[int, int]] = []
    starts = parse_times([a for a, _ in limits], where)
    ends = parse_times([b for _, b in limits], where)
    for start, end in sorted(zip(starts.tolist(), ends.tolist(), strict=True)):
        after = np.flatnonzero(times >= np.datetime64(start, "us"))
        if not after.size:
            raise NabError(f"{where}: window {start} .. {end} starts after the last row")
        first = int(after[0])
        tail = times[first:]
        equal = np.flatnonzero(tail == np.datetime64(end, "us"))
        past = np.flatnonzero(tail > np.datetime64(end, "us"))
        if equal.size:
            last = first + int(equal[0])
        else:
            last = first + int(past[0] if past.size else len(tail)) - 1
        if last < first:
            raise NabError(f"{where}: window {start} .. {end} holds no row")
        if rows and first <= rows[-1][1]:
            raise NabError(f"{where}: windows overlap near {start}")
        rows.append((first, last))
    return rows


def read_columns(path: Path, columns: Sequence[str]) -> list[list[str]]:
    """The named columns of a CSV file with a header, as text."""
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in columns if c not in header]
            if missing:
                raise NabError(f"{path}: no column {', '.join(missing)} (header {header})")
            idx = [header.index(c) for c in columns]
            out: list[list[str]] = [[] for _ in columns]
            for line in reader:
                if not line:
                    continue
                for col, i in zip(out, idx, strict=True):
                    col.append(line[i])
            return out
    except FileNotFoundError as exc:
        raise NabError(f"{path} not found") from exc
    except IndexError as exc:
        raise NabError(f"{path}: a row has fewer columns than the header") from exc


def read_corpus(root: Path) -> Corpus:
    """Read a NAB-layout folder; every data file must be labelled and every label have its file."""
    if not (root / "data").is_dir():
        raise NabError(f"{root} is not a NAB folder: no data/ directory")
    limits = load_windows(root / WINDOWS_FILE)
    found = {p.relative_to(root / "data").as_posix() for p in (root / "data").glob("*/*.csv")}
    if not found:
        raise NabError(f"{root} is not a NAB folder: no data/<category>/<file>.csv")
    if unlabelled := sorted(found - limits.keys()):
        raise NabError(f"{root / WINDOWS_FILE} has no entry for {', '.join(unlabelled[:5])}")
    if missing := sorted(limits.keys() - found):
        raise NabError(f"labelled files missing under {root / 'data'}: {', '.join(missing[:5])}")
    series = []
    for key in sorted(found):
        path = root / "data" / key
        times, values = read_columns(path, ("timestamp", "value"))
        series.append(Series(key, times, values,
                             window_rows(parse_times(times, str(path)), limits[key], str(path))))
    return Corpus(root, series, load_profiles(root / PROFILES_FILE))


def run_detector(series: Series, factory: DetectorFactory) -> np.ndarray:
    """Feed one file's rows in order to a fresh detector; its scores, checked to be in [0, 1]."""
    detector = factory()
    stamps = parse_times(series.timestamps, series.key).astype("int64") / 1e6
    scores = np.empty(len(stamps))
    for i, (ts_s, text) in enumerate(zip(stamps.tolist(), series.values, strict=True)):
        try:
            value = float(text)
        except ValueError as exc:
            raise NabError(f"{series.key} row {i + 1}: value {text!r} is not a number") from exc
        score = float(detector.update(ts_s, value))
        if not 0.0 <= score <= 1.0:  # also refuses NaN
            raise NabError(f"{series.key} row {i + 1}: detector gave {score}, not in [0, 1]")
        scores[i] = score
    return scores


def result_path(out: Path, detector: str, key: str) -> Path:
    """Where NAB expects a detector's results for one file."""
    category, filename = key.rsplit("/", 1)
    return out / detector / category / f"{detector}_{filename}"


def write_results(out: Path, detector: str, series: Series, scores: np.ndarray) -> Path:
    """Write one file's results in NAB's layout and columns; returns the path."""
    if not DETECTOR_NAME_RE.match(detector):
        raise NabError(f"detector name {detector!r}: letters and digits only")
    path = result_path(out, detector, series.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("timestamp", "value", "anomaly_score", "label"))
        writer.writerows(zip(series.timestamps, series.values, map(repr, scores.tolist()),
                             series.labels().tolist(), strict=True))
    return path


def run_corpus(corpus: Corpus, factory: DetectorFactory, detector: str, out: Path,
               on_file: Callable[[Series, float], None] | None = None) -> list[np.ndarray]:
    """Run a fresh detector over each file and write its results; the scores, file by file."""
    if not DETECTOR_NAME_RE.match(detector):
        raise NabError(f"detector name {detector!r}: letters and digits only")
    scores = []
    for s in corpus.series:
        began = time.perf_counter()
        scores.append(run_detector(s, factory))
        write_results(out, detector, s, scores[-1])
        if on_file is not None:
            on_file(s, time.perf_counter() - began)
    return scores


def read_results(results_dir: Path, corpus: Corpus) -> list[np.ndarray]:
    """A detector's `anomaly_score` columns under `results_dir` (named after the detector)."""
    scores = []
    for s in corpus.series:
        path = result_path(results_dir.parent, results_dir.name, s.key)
        times, column = read_columns(path, ("timestamp", "anomaly_score"))
        if len(times) != len(s.timestamps):
            raise NabError(f"{path}: {len(times)} rows, the data file has {len(s.timestamps)}")
        try:
            scores.append(np.array(column, dtype=float))
        except ValueError as exc:
            raise NabError(f"{path}: anomaly_score is not numeric ({exc})") from exc
        if not np.all(np.isfinite(scores[-1])):
            raise NabError(f"{path}: anomaly_score holds NaN or infinite values")
    return scores


def labelled_results(results_dir: Path, windows_json: Path,
                     profiles: tuple[CostProfile, ...] = NAB_PROFILES) -> tuple[Corpus, list[np.ndarray]]:
    """A results folder scored against a windows file alone (timestamps come from the results)."""
    limits = load_windows(windows_json)
    series = []
    for key in sorted(limits):
        path = result_path(results_dir.parent, results_dir.name, key)
        times, values = read_columns(path, ("timestamp", "value"))
        series.append(Series(key, times, values,
                             window_rows(parse_times(times, str(path)), limits[key], str(path))))
    corpus = Corpus(results_dir, series, profiles)
    return corpus, read_results(results_dir, corpus)


def score_corpus(corpus: Corpus, scores: Sequence[np.ndarray]) -> list[ProfileScore]:
    """Every profile of the folder, each with its own optimised threshold."""
    return [score_profile(corpus.series, scores, p) for p in corpus.profiles]
