"""`maillage bench`: the performance benchmark (see docs/benchmarks.md for the method)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import orjson
import typer

from maillage.cli.common import DataDir, clean_errors, settings_for

log = logging.getLogger(__name__)


@clean_errors
def bench(
    duration: Annotated[float, typer.Option(help="Seconds of the throughput phase.", min=5)] = 300,
    json: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    record: Annotated[bool, typer.Option("--record", help="Add the run to the runs table of "
                                                          "docs/benchmarks.md (or --append-to).")] = False,
    no_append: Annotated[bool, typer.Option("--no-append", hidden=True,
                                            help="Kept for old scripts: runs are only recorded "
                                                 "with --record.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Short baselines and latency phase "
                                                        "(about a minute with --duration 15).")] = False,
    gateways: Annotated[int, typer.Option(help="Gateway processes of the embedded stack.", min=1)] = 1,
    storages: Annotated[int, typer.Option(help="Storage processes of the embedded stack.", min=1)] = 1,
    publishers: Annotated[int, typer.Option(help="Publisher processes.", min=1)] = 2,
    sessions: Annotated[int, typer.Option(help="Device sessions per publisher process.", min=1)] = 24,
    rate: Annotated[float | None, typer.Option(help="Messages/s of the throughput phase "
                                                    "(default: as fast as the pipeline stores).")] = None,
    pause_db: Annotated[float, typer.Option("--pause-db", help="Also stop PostgreSQL this many "
                                                               "seconds under load (SIGSTOP/SIGCONT).")] = 0,
    use_running: Annotated[bool, typer.Option("--use-running",
                                              help="Measure the stack running from --data-dir.")] = False,
    profile: Annotated[Path | None, typer.Option(help="Profile gateway and storage with py-spy; "
                                                      "flame graphs and summaries in this folder.")] = None,
    append_to: Annotated[Path | None, typer.Option(help="Markdown file of runs "
                                                        "(default docs/benchmarks.md).")] = None,
    keep_data: Annotated[bool, typer.Option(help="Keep the bench stack's data directory.")] = False,
    window: Annotated[int | None, typer.Option(help="Readings allowed between published and stored "
                                                    "in the throughput phase (default 100000, "
                                                    "quick 30000).", min=1000)] = None,
    commune_query: Annotated[bool, typer.Option(
        "--commune-query", help="Also time a one-year daily query of a 10,000-meter commune "
                                "(seeds its own database: a few minutes).")] = False,
    commune_meters: Annotated[int, typer.Option(help="Meters of the --commune-query commune.",
                                                min=10)] = 10_000,
    kafka: Annotated[str | None, typer.Option(
        "--kafka", help="Embedded Kafka of the bench stack: apache or tansu (default: as `maillage up`).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Benchmark: machine baselines, end-to-end readings/s, latency, cost per component."""
    from rich.console import Console

    from maillage.bench.report import Dashboard, append_run, print_report
    from maillage.bench.runner import Bench, BenchConfig, default_docs_path

    settings = settings_for(data_dir, "bench")
    if kafka is not None:
        if kafka not in ("apache", "tansu"):
            raise typer.BadParameter("--kafka must be apache or tansu")
        settings = settings.model_copy(update={"kafka_kind": kafka})
    logging.getLogger().setLevel(logging.WARNING)
    config = BenchConfig(duration_s=duration, quick=quick, gateways=gateways, storages=storages,
                         publishers=publishers, sessions=sessions, rate=rate, pause_db_s=pause_db,
                         data_dir=data_dir, use_running=use_running, keep_data=keep_data,
                         profile_dir=profile, window=window)
    console = Console()
    with Dashboard(console) as ui:
        doc = Bench(config, settings, ui).run()
    print_report(console, doc)
    if commune_query:
        from maillage.bench.commune import commune_query as run_commune

        doc["commune_query"] = result = run_commune(meters=commune_meters,
                                                     server_url=settings.database_url)
        console.print(f"commune daily query ({result['meters']:,} meters, one year): "
                      f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms")
    if json is not None:
        json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        console.print(f"JSON written to {json}")
    if record and not no_append:
        path = append_to or default_docs_path()
        append_run(path, doc)
        if "commune_query" in doc:
            from maillage.bench.commune import markdown_line

            _append_section(path, "## Commune query", markdown_line(doc["commune_query"]))
        console.print(f"run added to {path}")
    if not doc["ok"]:
        raise typer.Exit(1)


def _append_section(path: Path, heading: str, line: str) -> None:
    """Add `line` at the end of the section `heading` of a markdown file (created when missing)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if heading not in text:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n"
    head, _, rest = text.partition(heading)
    nxt = rest.find("\n## ", 1)
    section, tail = (rest, "") if nxt < 0 else (rest[:nxt + 1], rest[nxt + 1:])
    body = section.rstrip("\n")
    path.write_text(head + heading + body + ("\n" if body else "\n\n") + line
                    + ("\n" + tail if tail else ""))
