"""What a run shows: live progress, the final table, the JSON document, the docs/benchmarks.md row."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

RUNS_START = "<!-- bench-runs:start -->"
RUNS_END = "<!-- bench-runs:end -->"
RUNS_HEADER = (
    "| date (UTC) | machine | commit | gw/st | e2e s | MQTT msg/s | Kafka rec/s | COPY rows/s "
    "| e2e readings/s | e2e msg/s | storage rows/s (x COPY) | latency p50/p95/p99 ms | lost | dup | notes |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def machine_info(gateways: int, storages: int) -> dict[str, Any]:
    """The machine and the software the figures belong to."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "commit": commit,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "gateway_processes": gateways,
        "storage_processes": storages,
    }


class Dashboard:
    """Live progress: one line per phase with its figures."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress = Progress(TextColumn("[bold]{task.description:<22}"), BarColumn(bar_width=24),
                                 TimeElapsedColumn(), TextColumn("{task.fields[stats]}"),
                                 console=self.console, transient=False)
        self._task: TaskID | None = None

    def __enter__(self) -> Dashboard:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def phase(self, name: str, total: float | None) -> None:
        """A new phase line (the previous one stays, completed)."""
        self.finish()
        self._task = self.progress.add_task(name, total=total, stats="")

    def tick(self, done: float | None = None, stats: str = "") -> None:
        if self._task is not None:
            self.progress.update(self._task, completed=done, stats=stats)

    def finish(self, stats: str | None = None) -> None:
        if self._task is not None:
            task = self.progress.tasks[-1]
            kwargs: dict[str, Any] = {"completed": task.total} if task.total else {"total": 1, "completed": 1}
            if stats is not None:
                kwargs["stats"] = stats
            self.progress.update(self._task, **kwargs)
            self._task = None

    def note(self, text: str) -> None:
        self.progress.console.print(text)


def _n(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def _print_fall_latency(console: Console, doc: dict[str, Any], key: str, what: str) -> bool:
    """The line of a fall's latency to `what` (`key`: `anomaly` or `alert` in `latency_ms`);
    False when the run did not measure it."""
    lat = doc["latency_ms"].get(key) or {}
    if lat.get("p50") is None:
        return False
    detail = doc.get("latency_detail") or {}
    console.print(
        f"latency fall published -> {what} at 50 % of max: p50 {_n(lat['p50'], 1)} ms, "
        f"p95 {_n(lat['p95'], 1)} ms, p99 {_n(lat['p99'], 1)} ms "
        f"({detail.get(f'{key}_samples', 0)} samples); at max: p99 "
        f"{_n((detail.get(f'{key}_at_max') or {}).get('p99'), 1)} ms")
    return True


def print_report(console: Console, doc: dict[str, Any]) -> None:
    """The final table: each stage against its baseline, latency, cost, verification."""
    b, e, st = doc["baselines"], doc["e2e"], doc.get("storage") or {}
    t = Table(title="maillage bench: throughput against the machine's baselines")
    for col in ("stage", "measured", "baseline", "ratio"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    t.add_row("MQTT in (msg/s)", _n(e["messages_per_s"]), f"raw MQTT {_n(b['mqtt_msgs_per_s'])}",
              _ratio(e["messages_per_s"], b["mqtt_msgs_per_s"]))
    t.add_row("Kafka hop (msg/s)", _n(e["messages_per_s"]),
              f"raw Kafka {_n(b['kafka_records_per_s'])}",
              _ratio(e["messages_per_s"], b["kafka_records_per_s"]))
    t.add_row("storage processor (rows/s)", _n(st.get("rows_per_s")),
              f"raw COPY {_n(b['copy_rows_per_s'])}", _ratio(st.get("rows_per_s"), b["copy_rows_per_s"]))
    t.add_row("end to end (readings/s)", _n(e["readings_per_s"]),
              f"raw COPY {_n(b['copy_rows_per_s'])}", _ratio(e["readings_per_s"], b["copy_rows_per_s"]))
    console.print(t)
    lat = doc["latency_ms"]["stored"]
    detail = doc.get("latency_detail") or {}
    at_max = detail.get("stored_at_max") or {}
    console.print(
        f"latency publication -> row stored at {_n(detail.get('rate_msgs_per_s'))} msg/s (50 % of max): "
        f"p50 {_n(lat['p50'], 1)} ms, p95 {_n(lat['p95'], 1)} ms, p99 {_n(lat['p99'], 1)} ms "
        f"({detail.get('samples', 0)} samples); at max: p50 {_n(at_max.get('p50'), 1)} ms, "
        f"p99 {_n(at_max.get('p99'), 1)} ms")
    if detail.get("detection_catch_up_s") is not None:
        console.print(f"before the latency phase, detection caught up with the earlier phases in "
                      f"{_n(detail['detection_catch_up_s'], 1)} s, rollups in "
                      f"{_n(detail.get('rollups_catch_up_s'), 1)} s")
    if _print_fall_latency(console, doc, "anomaly", "anomaly stored"):
        parts = (detail.get("anomaly_segments") or {}).get("latency") or {}
        if parts:
            console.print("  where it went (p50 / p99 ms): " + ", ".join(
                f"{name} {_n(p.get('p50'), 1)} / {_n(p.get('p99'), 1)}" for name, p in parts.items()))
    _print_fall_latency(console, doc, "alert", "alert on a coordinator's SSE stream")
    c = Table(title="cost per component (throughput phase)")
    for col in ("component", "CPU s / million readings", "CPU cores used", "peak memory MB (PSS)"):
        c.add_column(col, justify="right" if col != "component" else "left")
    for comp, v in doc["cost"].items():
        c.add_row(comp, _n(v["cpu_s_per_million"], 1), _n(v.get("cores"), 2), _n(v["peak_rss_mb"]))
    console.print(c)
    console.print(
        f"verification: published {_n(e['published'])} readings in {_n(e.get('messages_published'))} "
        f"messages, stored {_n(e['stored'])}, lost {e['lost']}, duplicates absorbed {_n(e['duplicated'])}; "
        f"storage feed lost {st.get('lost', '-')}; events lost {e.get('events_lost', '-')}")
    if doc.get("pause_db"):
        p = doc["pause_db"]
        console.print(
            f"database paused {p['paused_s']} s at {_n(p['rate_msgs_per_s'])} msg/s: caught up "
            f"{_n(p['catch_up_s'], 1)} s after resuming; peak memory MB gateway "
            f"{_n(p['peak_mb'].get('gateway'))}, storage {_n(p['peak_mb'].get('storage'))}, kafka "
            f"{_n(p['peak_mb'].get('kafka'))}, mosquitto {_n(p['peak_mb'].get('mosquitto'))} "
            f"(before: gateway {_n(p['before_mb'].get('gateway'))}, storage "
            f"{_n(p['before_mb'].get('storage'))})")
    for failure in doc.get("failures", []):
        console.print(f"[red]FAILED[/red]: {failure}")


def markdown_row(doc: dict[str, Any]) -> str:
    """One line of the runs table of docs/benchmarks.md."""
    m, b, e = doc["machine"], doc["baselines"], doc["e2e"]
    st = doc.get("storage") or {}
    lat = doc["latency_ms"]["stored"]
    notes = []
    kafka = doc.get("config", {}).get("kafka") or {}
    if kafka.get("kind"):
        notes.append(f"Kafka {kafka['kind']}" + (f" (up in {kafka['start_s']} s)"
                                                 if kafka.get("start_s") is not None else ""))
    if doc.get("config", {}).get("quick"):
        notes.append("quick")
    if doc.get("config", {}).get("profiled"):
        notes.append("py-spy attached")
    if doc.get("pause_db"):
        notes.append(f"db paused {doc['pause_db']['paused_s']} s, caught up in "
                     f"{_n(doc['pause_db']['catch_up_s'], 1)} s")
    fall = doc["latency_ms"].get("anomaly") or {}
    if fall.get("p99") is not None:
        notes.append(f"fall -> anomaly p99 {_n(fall['p99'], 0)} ms")
    alert = doc["latency_ms"].get("alert") or {}
    if alert.get("p99") is not None:
        notes.append(f"fall -> SSE alert p99 {_n(alert['p99'], 0)} ms")
    det = (doc.get("cost") or {}).get("detection") or {}
    if det.get("cpu_s_per_million") is not None:
        notes.append(f"detection {_n(det['cpu_s_per_million'], 1)} CPU s/M readings")
    catch_up = doc.get("latency_detail", {}).get("detection_catch_up_s")
    if catch_up:
        notes.append(f"detection caught up {_n(catch_up, 1)} s, rollups "
                     f"{_n(doc['latency_detail'].get('rollups_catch_up_s'), 1)} s before half load")
    if doc.get("failures"):
        notes.append("FAILED")
    load = m.get("load_average_at_start")
    if load:
        notes.append(f"load {load[0]}")
    machine = f"{m['cpus']} CPU {m['cpu'][:28]}, {m['memory_gb']} GB".replace("|", "/")
    storage = f"{_n(st.get('rows_per_s'))} ({_ratio(st.get('rows_per_s'), b['copy_rows_per_s'])})"
    cells = [
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), machine, m.get("commit") or "-",
        f"{m['gateway_processes']}/{m['storage_processes']}", _n(e["duration_s"]),
        _n(b["mqtt_msgs_per_s"]), _n(b["kafka_records_per_s"]), _n(b["copy_rows_per_s"]),
        _n(e["readings_per_s"]), _n(e["messages_per_s"]), storage,
        f"{_n(lat['p50'], 0)}/{_n(lat['p95'], 0)}/{_n(lat['p99'], 0)}", str(e["lost"]),
        _n(e["duplicated"]), "; ".join(notes),
    ]
    return "| " + " | ".join(cells) + " |\n"


def append_run(path: Path, doc: dict[str, Any]) -> None:
    """Add the run to the table between the markers of `path` (created when missing)."""
    row = markdown_row(doc)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if RUNS_START not in text or RUNS_END not in text:
        text = text.rstrip("\n") + f"\n\n## Runs\n\n{RUNS_START}\n{RUNS_HEADER}{RUNS_END}\n"
    head, rest = text.split(RUNS_END, 1)
    path.write_text(head + row + RUNS_END + rest)
