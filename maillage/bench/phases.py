"""The timed phases of a run: publishing (throughput, latency), storage figure, database pause, py-spy."""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from maillage import topics
from maillage.bench import baselines
from maillage.bench.config import TENANT, BenchError
from maillage.bench.fleet import Archetype, readings_per_message
from maillage.bench.probes import LatencyProbe, ResourceSampler, Snapshot
from maillage.bench.progress import Progress
from maillage.bench.publish import PublisherPool
from maillage.bench.report import Dashboard


@dataclass
class Phase:
    """Figures of a timed phase."""

    seconds: float = 0.0
    readings: float = 0.0
    stored: float = 0.0
    messages: float = 0.0
    published_readings: int = 0
    published_messages: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    """Wall-clock start (epoch s): to find the phase in the stack's logs."""

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0


def wait_ready(pool: PublisherPool, *, timeout_s: float = 60) -> None:
    """Wait until every publisher process has connected its sessions."""
    deadline = time.monotonic() + timeout_s
    while not all(pool.control.ready[:]):
        errors = pool.failed_early()
        if errors:
            raise BenchError("publisher sessions failed: " + "; ".join(errors[:3]))
        if time.monotonic() > deadline:
            raise BenchError("publisher sessions did not connect")
        time.sleep(0.05)


def publish_phase(name: str, seconds: float, *, pool: PublisherPool, sampler: ResourceSampler,
                  progress: Progress, ui: Dashboard, window: int, rate: float, closed: bool,
                  warmup_s: float = 0.0, at: Callable[[float], None] | None = None) -> Phase:
    """Publish for `seconds`; figures over the part after `warmup_s`."""
    control = pool.control
    start_snap = progress.snap()
    start_pub = control.total("readings")
    control.credit.value = start_pub + window if closed else -1
    pool.set_rate(rate)
    ui.phase(name, seconds)
    started, started_at = time.monotonic(), time.time()
    w_snap: Snapshot | None = None
    w_cpu: dict[str, float] = {}
    w_pub = (0, 0)
    last_snap, last_t = start_snap, started
    shown = 0.0
    while True:
        time.sleep(0.2)
        now = time.monotonic()
        el = now - started
        snap = progress.snap()
        if closed:
            control.credit.value = int(start_pub + snap.processed_readings
                                       - start_snap.processed_readings + window)
        if w_snap is None and el >= warmup_s:
            w_snap = snap
            w_cpu = {c: u.cpu_s for c, u in sampler.measure().items()}
            w_pub = (control.total("readings"), control.total("messages"))
        if at is not None:
            at(el)
        if now - last_t >= 1.0:
            shown = (snap.processed_readings - last_snap.processed_readings) / (now - last_t)
            last_snap, last_t = snap, now
        progress.check_pool()
        ui.tick(el, f"stored {shown:,.0f} readings/s, backlog {progress.backlog(snap):,.0f}")
        if el >= seconds:
            break
    end_snap = progress.snap()
    end_cpu = {c: u.cpu_s for c, u in sampler.measure().items()}
    pool.set_rate(0)
    control.credit.value = -1
    assert w_snap is not None
    ph = Phase(seconds=end_snap.at - w_snap.at,
               readings=end_snap.processed_readings - w_snap.processed_readings,
               stored=end_snap.stored_readings - w_snap.stored_readings,
               published_readings=control.total("readings") - w_pub[0],
               published_messages=control.total("messages") - w_pub[1],
               cpu={c: end_cpu[c] - w_cpu.get(c, 0.0) for c in end_cpu}, started_at=started_at)
    rpm = ph.published_readings / ph.published_messages if ph.published_messages else 1.0
    ph.messages = ph.readings / rpm
    ui.finish(f"{ph.readings_per_s:,.0f} readings/s, {ph.messages / ph.seconds:,.0f} msg/s")
    return ph


def storage_figure(*, e2e_readings_per_s: float, kafka_bootstrap: str, mix: list[Archetype],
                   device_pks: dict[str, int], t0: int, storage_s: float, sampler: ResourceSampler,
                   progress: Progress, ui: Dashboard,
                   failures: list[str]) -> tuple[dict[str, Any], Counter[tuple[str, str]]]:
    """Envelopes straight into Kafka; the storage processor alone drains them.

    Returns the figure and the rows the feed expects per (device, metric), for the verification.
    """
    ctx = mp.get_context("spawn")
    rpm = readings_per_message([a for a in mix if a.readings_per_message > 0])
    rows_target = storage_s * max(3 * e2e_readings_per_s, 20_000)
    n = int(rows_target / rpm)
    ids = [d for d in device_pks if "-feed-" in d]
    produced = ctx.Value("q", 0, lock=False)
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    feed = ctx.Process(target=baselines.storage_feed_main, daemon=True, args=(
        kafka_bootstrap, topics.READINGS, mix, TENANT, sorted(ids), t0, n,
        produced, ready, go, results))
    ui.phase("storage: preparing feed", None)
    feed.start()
    counts = baselines.drain_queue(results, 120)
    if counts is None or not ready.wait(30):
        raise BenchError("the storage feed could not prepare its records")
    feed_counts: Counter[tuple[str, str]] = Counter(counts)
    rows = sum(feed_counts.values())
    ui.finish(f"{n:,} envelopes, {rows:,} rows")
    snap0 = progress.snap()
    cpu0 = {c: u.cpu_s for c, u in sampler.measure().items()}
    progress.feed_rows += rows
    ui.phase("storage processor", None)
    go.set()
    t_go = time.monotonic()
    t_p = p_done = None
    last_progress, last_value = t_go, -1.0
    cpu_p: dict[str, float] = {}
    while True:
        time.sleep(0.1)
        snap = progress.snap()
        now = time.monotonic()
        done = snap.processed_readings - snap0.processed_readings
        if t_p is None and produced.value >= n:
            t_p, p_done = now, done
            cpu_p = {c: u.cpu_s for c, u in sampler.measure().items()}
        ui.tick(None, f"{done:,.0f} / {rows:,} rows stored")
        if done >= rows:
            break
        if done != last_value:
            last_value, last_progress = done, now
        if now - last_progress > 30:
            failures.append("storage figure: the storage processor stopped storing")
            break
    t_end = time.monotonic()
    cpu_end = {c: u.cpu_s for c, u in sampler.measure().items()}
    feed.join(timeout=10)
    if t_p is None or p_done is None:
        t_p, p_done, cpu_p = t_end, done, cpu_end
    remaining = rows - p_done
    drain_only = remaining >= 0.25 * rows and t_end - t_p > 0.5
    if drain_only:
        rate, seconds, rows_m, cpu_a = remaining / (t_end - t_p), t_end - t_p, remaining, cpu_p
    else:
        rate, seconds, rows_m, cpu_a = rows / (t_end - t_go), t_end - t_go, rows, cpu0
    cost = {c: round((cpu_end[c] - cpu_a.get(c, 0.0)) / rows_m * 1e6, 1)
            for c in ("storage", "postgres") if c in cpu_end and rows_m}
    ui.finish(f"{rate:,.0f} rows/s" + ("" if drain_only else " (lower bound: the feed was slower)"))
    return {"rows_per_s": round(rate), "rows": rows, "records": n, "seconds": round(seconds, 2),
            "drain_only": drain_only, "cpu_s_per_million": cost}, feed_counts


def pause_db(rate: float, *, postgres_pid: int | None, pause_s: float, quick: bool,
             pool: PublisherPool, sampler: ResourceSampler, progress: Progress,
             probe: LatencyProbe | None, ui: Dashboard, window: int) -> dict[str, Any]:
    """Publish at `rate`; stop PostgreSQL for `pause_s` in the middle; resume; catch up."""
    pid = postgres_pid
    if pid is None:
        raise BenchError("--pause-db needs the embedded PostgreSQL (its PID is not in the state file)")
    pre, paused, post = (3.0, pause_s, 5.0) if quick else (10.0, pause_s, 20.0)
    before = {c: u.mem_mb for c, u in sampler.measure(memory=True).items()}
    sampler.reset_peaks()
    stopped: list[psutil.Process] = []
    resumed_at: list[float] = []

    def stop_db() -> None:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        for p in procs:
            try:
                p.send_signal(signal.SIGSTOP)
                stopped.append(p)
            except psutil.NoSuchProcess:
                pass

    def resume_db() -> None:
        for p in reversed(stopped):
            try:
                p.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass
        stopped.clear()
        resumed_at.append(time.monotonic())

    def at(el: float) -> None:
        if not stopped and not resumed_at and el >= pre:
            stop_db()
            ui.note(f"PostgreSQL stopped (SIGSTOP) for {paused:.0f} s")
        elif stopped and el >= pre + paused:
            resume_db()
            ui.note("PostgreSQL resumed (SIGCONT)")

    try:
        if probe is not None:
            probe.phase = "pause"
        publish_phase(f"database paused {paused:.0f} s", pre + paused + post, pool=pool,
                      sampler=sampler, progress=progress, ui=ui, window=window, rate=rate,
                      closed=False, at=at)
    finally:
        if stopped:
            resume_db()
        if probe is not None:
            probe.phase = None
    progress.drain("after the pause")
    caught_up = time.monotonic() - resumed_at[0] if resumed_at else None
    peaks = sampler.reset_peaks()
    return {"paused_s": paused, "rate_msgs_per_s": round(rate), "catch_up_s": caught_up and round(caught_up, 1),
            "peak_mb": {c: round(v) for c, v in peaks.items()},
            "before_mb": {c: round(v) for c, v in before.items()}}


def start_profile(*, profile_dir: Path | None, duration_s: float, warmup_s: float,
                  pids: dict[str, int]) -> list[Any]:
    """py-spy recordings of the Python processes on the hot path over the throughput phase."""
    from maillage.bench import profile

    if profile_dir is None:
        return []
    seconds = int(max(5, min(30, duration_s - warmup_s - 2)))
    out = []
    for name, pid in pids.items():
        if name.startswith(("gateway", "storage", "detection", "control", "commands", "alerting")):
            rec = profile.record(pid, name, profile_dir, seconds)
            if rec is not None:
                out.append(rec)
    return out


def finish_profile(recordings: list[Any], *, profile_dir: Path | None) -> dict[str, Any] | None:
    """Summaries of the recordings (also written to `summary.md` of the profile directory)."""
    from maillage.bench import profile

    if not recordings:
        return None
    out: dict[str, Any] = {}
    md = []
    for rec in recordings:
        rec.wait(60)
        if rec.raw.exists():
            s = profile.summarize(rec.raw)
            out[rec.name] = s
            md.append(profile.summary_markdown(rec.name, s))
    if profile_dir is not None and md:
        (profile_dir / "summary.md").write_text("\n".join(md))
    return out
