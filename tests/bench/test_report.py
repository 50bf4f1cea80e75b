"""Results: percentiles, the runs table of docs/benchmarks.md, py-spy summaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maillage.bench.probes import percentiles, timeline
from maillage.bench.profile import summarize
from maillage.bench.report import RUNS_END, RUNS_START, append_run, markdown_row


def _doc() -> dict[str, Any]:
    return {
        "machine": {"cpus": 2, "cpu": "Test CPU", "memory_gb": 4.0, "commit": "abc1234",
                    "gateway_processes": 1, "storage_processes": 1, "load_average_at_start": [0.5, 0, 0]},
        "config": {"quick": True},
        "baselines": {"mqtt_msgs_per_s": 20000, "kafka_records_per_s": 30000, "copy_rows_per_s": 200000},
        "e2e": {"readings_per_s": 10000, "messages_per_s": 1800, "duration_s": 15, "published": 10,
                "stored": 10, "lost": 0, "duplicated": 0},
        "storage": {"rows_per_s": 50000},
        "latency_ms": {"stored": {"p50": 100.0, "p95": 200.0, "p99": 300.0},
                       "alert": {"p50": None, "p95": None, "p99": None}},
        "cost": {},
    }


def test_percentiles_nearest_rank() -> None:
    """p50/p95/p99 by nearest rank; None without samples."""
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
    values = [float(i) for i in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}


def test_timeline_keeps_the_worst_latency_of_each_second() -> None:
    """Per second of publication time: the samples and the worst, from the first sample on."""
    assert timeline([], []) == []
    sent = [100.0, 100.4, 100.9, 102.5, 102.6]
    ms = [120.0, 900.0, 80.0, 60.0, 1500.0]
    assert timeline(sent, ms) == [[0.0, 3, 900.0], [2.0, 2, 1500.0]]


def test_runs_are_appended_between_markers(tmp_path: Path) -> None:
    """The first run creates the table; later runs add rows; text around it stays."""
    doc_md = tmp_path / "benchmarks.md"
    doc_md.write_text("# Benchmarks\n\nMethod...\n")
    append_run(doc_md, _doc())
    append_run(doc_md, _doc())
    text = doc_md.read_text()
    assert text.startswith("# Benchmarks\n\nMethod...")
    table = text.split(RUNS_START)[1].split(RUNS_END)[0]
    rows = [line for line in table.splitlines() if line.startswith("| 20")]
    assert len(rows) == 2
    assert "10,000" in rows[0] and "100/200/300" in rows[0] and "0.25x" in rows[0]


def test_markdown_row_has_one_cell_per_column() -> None:
    """As many cells as the header has columns."""
    row = markdown_row(_doc())
    assert row.count("|") == 16


def test_profile_summary_from_collapsed_stacks(tmp_path: Path) -> None:
    """Own time per function and per package, and time per thread."""
    raw = tmp_path / "gw.txt"
    raw.write_text(
        "thread (1): MainThread;run (asyncio/base_events.py:10);parse (maillage/ingest/formats/tic.py:63) 30\n"
        "thread (1): MainThread;run (asyncio/base_events.py:10);send (aiokafka/producer/producer.py:5) 10\n"
        "thread (2): paho;_loop (paho/mqtt/client.py:1) 60\n")
    s = summarize(raw)
    assert s["samples"] == 100
    assert dict(s["packages"]) == {"paho": 60.0, "maillage.ingest.formats": 30.0, "aiokafka": 10.0}
    assert dict(s["threads"])["thread (2): paho"] == 60.0
    assert dict(s["inclusive"]) == {"parse (ingest/formats/tic.py)": 30.0}
