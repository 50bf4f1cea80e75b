"""`maillage eval nab` on a small NAB-layout folder: results layout, columns, rows, scores."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from maillage.cli import eval as eval_cli
from maillage.cli.eval import eval_app

# As `maillage` registers it: `app.add_typer(eval_app, name="eval")`.
app = typer.Typer()
app.add_typer(eval_app, name="eval")


class Jump:
    """A trivial online detector for these tests: 1 when a value jumps by more than 5."""

    def __init__(self) -> None:
        self.last: float | None = None

    def update(self, ts_s: float, value: float) -> float:
        jump = self.last is not None and abs(value - self.last) > 5
        self.last = value
        return 1.0 if jump else 0.0


def stamp(i: int) -> str:
    """Row i's timestamp, five minutes apart, in NAB's text form."""
    minutes = 5 * i
    return f"2024-03-{1 + minutes // 1440:02d} {minutes % 1440 // 60:02d}:{minutes % 60:02d}:00"


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """A NAB data file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([("timestamp", "value"), *rows])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two files: one with a level jump at row 200 inside a window of rows 195-224, one flat."""
    root = tmp_path / "nab"
    write_csv(root / "data" / "catA" / "a.csv",
              [(stamp(i), f"{10.5 if i < 200 else 30.25}") for i in range(300)])
    write_csv(root / "data" / "catB" / "b.csv", [(stamp(i), "7") for i in range(200)])
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps({
        "catA/a.csv": [[f"{stamp(195)}.000000", f"{stamp(224)}.000000"]],
        "catB/b.csv": []}))
    return root


@pytest.fixture
def jump_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command runs this test detector instead of the detection stage's."""
    monkeypatch.setattr(eval_cli, "load_detector", lambda: ("Jump", Jump))


def read(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


# Detection at row 200 of the window 195-224: relative position -(224 - 200 + 1) / 30.
REWARD = (2 / (1 + math.exp(-5 * 25 / 30)) - 1) / (2 / (1 + math.exp(-5)) - 1)


def test_results_layout_columns_and_rows(folder: Path, tmp_path: Path, jump_detector: None) -> None:
    """OUT/<detector>/<category>/<detector>_<file>.csv, one row per data row, labels from windows."""
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["eval", "nab", "--data", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv"))
    assert files == ["Jump/catA/Jump_a.csv", "Jump/catB/Jump_b.csv"]
    a = read(out / "Jump" / "catA" / "Jump_a.csv")
    assert a[0] == ["timestamp", "value", "anomaly_score", "label"]
    assert len(a) == 301
    assert a[1:] and [r[:2] for r in a[1:]] == read(folder / "data" / "catA" / "a.csv")[1:]
    assert [i for i, r in enumerate(a[1:]) if r[3] == "1"] == list(range(195, 225))
    assert [i for i, r in enumerate(a[1:]) if float(r[2]) > 0] == [200]
    b = read(out / "Jump" / "catB" / "Jump_b.csv")
    assert len(b) == 201 and {r[3] for r in b[1:]} == {"0"} and {r[2] for r in b[1:]} == {"0.0"}
    # The table names every profile with its score.
    for name in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert name in result.output
    assert f"{100 * (REWARD + 1) / 2:.1f}" in result.output


def test_json_scores(folder: Path, tmp_path: Path, jump_detector: None) -> None:
    """--json gives the three NAB scores; --score-only rescored from the files gives the same."""
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["eval", "nab", "--data", str(folder), "--out", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["detector"], doc["files"], doc["rows"], doc["windows"]) == ("Jump", 2, 500, 1)
    assert doc["results"] == str(out / "Jump")
    scores = doc["scores"]
    assert scores["standard"]["score"] == pytest.approx(100 * (REWARD + 1) / 2)
    assert scores["reward_low_FN_rate"]["score"] == pytest.approx(100 * (REWARD + 2) / 3)
    assert scores["standard"]["detected"] == 1 and scores["standard"]["false_positives"] == 0
    again = CliRunner().invoke(app, ["eval", "nab", "--data", str(folder), "--out", str(out),
                                     "--score-only", "Jump", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["scores"] == scores


def test_not_a_nab_folder(tmp_path: Path, folder: Path, jump_detector: None) -> None:
    """A folder without NAB's layout, or with an unlabelled file: a clear error, exit 1."""
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["eval", "nab", "--data", str(tmp_path / "nothing"),
                                      "--out", str(out)])
    assert result.exit_code == 1
    assert "not a NAB folder" in result.output
    write_csv(folder / "data" / "catB" / "extra.csv", [(stamp(0), "1")])
    result = CliRunner().invoke(app, ["eval", "nab", "--data", str(folder), "--out", str(out)])
    assert result.exit_code == 1
    assert "no entry for catB/extra.csv" in result.output
    assert not out.exists()


def test_eval_group_has_nab_and_scenario() -> None:
    """Both evaluation commands hang off `maillage eval`."""
    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0, result.output
    assert "nab" in result.output and "scenario" in result.output


def test_with_the_detection_stage_detector(folder: Path, tmp_path: Path) -> None:
    """Without substitution the command runs the online detector and writes under its name."""
    from maillage.processors.detection.online import DETECTOR_NAME

    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["eval", "nab", "--data", str(folder), "--out", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["detector"] == DETECTOR_NAME and DETECTOR_NAME.isalnum()
    for key, rows in (("catA/a.csv", 300), ("catB/b.csv", 200)):
        category, name = key.split("/")
        written = read(out / DETECTOR_NAME / category / f"{DETECTOR_NAME}_{name}")
        assert written[0] == ["timestamp", "value", "anomaly_score", "label"]
        assert len(written) == rows + 1
        assert all(0.0 <= float(r[2]) <= 1.0 for r in written[1:])
    assert set(doc["scores"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert all(math.isfinite(s["score"]) and s["score"] <= 100.0 for s in doc["scores"].values())
