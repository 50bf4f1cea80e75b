"""`maillage eval scenario`: the scenario evaluation's options, table and JSON.

Registered by the `eval` group: `eval_app.command("scenario")(scenario)`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def render(report: dict[str, Any], console: Console) -> None:
    """The per-kind table, the detections of unlabelled kinds, and examples of what failed."""
    devices = report["devices"]
    console.print(
        f"seed {report['seed']} · {report['days']} days with anomalies after "
        f"{report['warmup_days']} days of warm-up, {report['tail_h']:g} h tail "
        f"({report['start']} → {report['end']}) · {sum(devices.values())} devices "
        f"({', '.join(f'{n} {t}' for t, n in devices.items())})")
    console.print(
        f"{report['publications']:,} publications, {report['envelopes']:,} envelopes, "
        f"{sum(report['rejected'].values()):,} rejected, {report['anomalies']:,} anomalies · "
        f"grace {_dur(report['grace_s'])} after a label's end")
    table = Table(title="Labelled kinds (target: recall ≥ 95 %, precision ≥ 90 %)")
    for col in ("kind", "detected as", "labels", "matched", "recall", "detections", "right",
                "precision", "open at end", "delay p50", "delay p95", "pass"):
        table.add_column(col, justify="left" if col in ("kind", "detected as") else "right")
    for row in report["kinds"]:
        table.add_row(
            row["kind"], ", ".join(k for k in row["detector_kinds"] if k != row["kind"]) or "=",
            str(row["labels"]), str(row["matched"]), _pct(row["recall"]), str(row["detections"]),
            str(row["right"]), _pct(row["precision"]), str(row["open_at_end"]),
            _dur(row["delay_s"]["p50"]),
            _dur(row["delay_s"]["p95"]), "[green]yes[/]" if row["pass"] else "[red]no[/]")
    console.print(table)
    if report["unlabelled"]:
        extra = Table(title="Kinds no label has (counted apart)")
        for col in ("kind", "detections", "overlapping a label", "label kinds overlapped"):
            extra.add_column(col, justify="left" if col != "detections" else "right")
        for row in report["unlabelled"]:
            extra.add_row(row["kind"], str(row["detections"]), str(row["overlapping_a_label"]),
                          ", ".join(f"{k} {n}" for k, n in row["by_label_kind"].items()))
        console.print(extra)
    for row in report["kinds"]:
        if row["pass"] or not (row["missed"] or row["false_positives"]):
            continue
        console.print(f"[bold]{row['kind']}[/]")
        for lb in row["missed"]:
            console.print(f"  missed {lb['device_id']} {lb['start']} → {lb['end']} {lb['params']}"
                          f" ({lb.get('published_in_window', '?')} messages in the window)")
        if row.get("missed_silent"):
            console.print(f"  {row['missed_silent']} missed labels had no message at all in their "
                          f"window (nothing could show them)")
        for fp in row["false_positives"]:
            console.print(f"  false positive {fp['kind']} on {fp['device_id']} raised "
                          f"{fp['raised']} (start {fp['start']}, end {fp['end']})"
                          + (f", overlapping {', '.join(fp['overlaps'])}" if fp['overlaps'] else ""))
        if row["false_positives_overlapping"]:
            console.print(f"  false positives overlapping labels: "
                          f"{row['false_positives_overlapping']}; overlapping none: "
                          f"{row['false_positives_alone']}")


@clean_errors
def scenario(
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same report.")] = 1,
    days: Annotated[int, typer.Option(help="Simulated days in which anomalies are injected.")] = 30,
    warmup_days: Annotated[int, typer.Option(
        "--warmup-days", help="Days without anomalies first (the detectors learn).")] = 3,
    tail_hours: Annotated[float, typer.Option(
        "--tail-hours", help="Hours without new anomalies at the end.")] = 12,
    grace: Annotated[float, typer.Option(
        help="Seconds after a label's end in which a detection still matches it.")] = 1800,
    silent_step: Annotated[float, typer.Option(
        "--silent-step", help="Simulated seconds between two silence checks.")] = 300,
    examples: Annotated[int, typer.Option(help="Missed labels and false positives shown per kind.")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Simulated territory with labelled anomalies through the detectors: precision, recall, delay per kind."""
    from maillage.eval.scenario import RunOptions, run

    settings_for(data_dir, "eval")
    report = run(RunOptions(seed=seed, days=days, warmup_days=warmup_days, tail_h=tail_hours,
                            grace_s=grace, silent_step_s=silent_step, examples=examples))
    if json_out:
        print_json(report)
    else:
        render(report, Console())
