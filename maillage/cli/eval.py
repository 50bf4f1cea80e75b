"""`maillage eval …`: how well the detectors do on labelled data (`nab` here, `scenario` beside)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from maillage.cli.common import clean_errors, print_json
from maillage.cli.eval_scenario import scenario
from maillage.errors import MaillageError
from maillage.eval.nab import DetectorFactory, Series
from maillage.eval.nab_scoring import ProfileScore
from maillage.logs import setup_logging

eval_app = typer.Typer(help="Evaluate the detectors on labelled data.", no_args_is_help=True)


def load_detector() -> tuple[str, DetectorFactory]:
    """The statistical detector of the detection stage: its name and its class."""
    try:
        from maillage.processors.detection.online import DETECTOR_NAME, OnlineDetector
    except ImportError as exc:
        raise MaillageError(f"the online detector is not available ({exc})") from exc
    return DETECTOR_NAME, OnlineDetector


def _table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"NAB: {doc['detector']} on {doc['data']} ({doc['files']} files, "
                        f"{doc['rows']:,} rows, {doc['windows']} windows)")
    table.add_column("profile", no_wrap=True)
    for name in ("score", "threshold", "found", "missed", "false pos.", "raw"):
        table.add_column(name, justify="right")
    for name, s in doc["scores"].items():
        table.add_row(name, f"{s['score']:.1f}", f"{s['threshold']:.4g}", str(s["detected"]),
                      str(s["missed"]), str(s["false_positives"]), f"{s['raw']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"results: {doc['results']}  ({doc['seconds']:.1f} s)")


@eval_app.command("nab")
@clean_errors
def nab(data: Annotated[Path, typer.Option(
            "--data", help="NAB-layout folder: data/<category>/<file>.csv, labels/combined_windows.json.")],
        out: Annotated[Path, typer.Option(
            "--out", help="Results folder; writes OUT/<detector>/<category>/<detector>_<file>.csv.")],
        json: Annotated[bool, typer.Option("--json", help="One JSON object instead of the table.")] = False,
        score_only: Annotated[str | None, typer.Option(
            "--score-only", metavar="DETECTOR",
            help="Do not run anything: score the results already in OUT/DETECTOR.")] = None,
        ) -> None:
    """Run the statistical detector over a NAB folder, write NAB results, print NAB's three scores."""
    from maillage.eval import nab as nab_eval
    from maillage.eval import nab_scoring

    setup_logging("WARNING")
    began = time.perf_counter()
    corpus = nab_eval.read_corpus(data)
    if score_only is not None:
        name = score_only
        scores = nab_eval.read_results(out / name, corpus)
    else:
        name, factory = load_detector()
        done = iter(range(1, len(corpus.series) + 1))

        def progress(series: Series, seconds: float) -> None:
            typer.echo(f"{next(done):3}/{len(corpus.series)} {series.key} "
                       f"({len(series.timestamps):,} rows, {seconds:.1f} s)", err=True)

        scores = nab_eval.run_corpus(corpus, factory, name, out, on_file=progress)
    results: list[ProfileScore] = nab_eval.score_corpus(corpus, scores)
    doc = {"detector": name, "data": str(data), "results": str(out / name),
           "files": len(corpus.series), "rows": corpus.rows, "windows": corpus.windows,
           "seconds": round(time.perf_counter() - began, 3),
           "scores": {r.profile: r.to_dict() for r in results},
           # Where each file gains or loses, at each profile's chosen threshold.
           "per_file": {s.key: {r.profile: nab_scoring.score_file(s, sc, profile, r.threshold)
                                for r, profile in zip(results, corpus.profiles, strict=True)}
                        for s, sc in zip(corpus.series, scores, strict=True)}}
    if json:
        print_json(doc)
    else:
        _table(doc)


eval_app.command("scenario")(scenario)  # its options, table and JSON live in eval_scenario.py
