"""What the bench handed to the pipeline and how much of it is stored: snapshots, backlog, drains."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from maillage.bench import queries
from maillage.bench.config import PROBE_READINGS, BenchError
from maillage.bench.probes import Counters, LatencyProbe, Snapshot
from maillage.bench.publish import PublisherPool
from maillage.bench.report import Dashboard


@dataclass
class Progress:
    """The pipeline's progress on the bench's readings during a run.

    `pool`, `probe`, `feed_rows` and `base` are filled in as the run starts them; `dup_marks`
    records the duplicates counter at the end of each drain (the document splits them by phase).
    """

    db_url: str
    ui: Dashboard
    quick: bool
    device_pks: dict[str, int]
    counters: Counters | None
    pool: PublisherPool | None = None
    probe: LatencyProbe | None = None
    feed_rows: int = 0
    base: Snapshot | None = None
    dup_marks: list[tuple[str, float]] = field(default_factory=list)

    def snap(self) -> Snapshot:
        if self.counters is not None:
            return self.counters.snapshot()
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            n = queries.count_readings(conn=conn, device_pks=list(self.device_pks.values()))
        return Snapshot(time.monotonic(), stored_readings=float(n))

    def handed(self) -> int:
        """Readings handed to the pipeline so far by the bench (sessions, probe, feed)."""
        pub = self.pool.control.total("readings") if self.pool is not None else 0
        probe = self.probe.published * PROBE_READINGS if self.probe is not None else 0
        return pub + probe + self.feed_rows

    def backlog(self, snap: Snapshot) -> float:
        """Readings handed to the pipeline and not yet stored as new rows."""
        assert self.base is not None
        return self.handed() - (snap.stored_readings - self.base.stored_readings)

    def check_pool(self) -> None:
        if self.pool is not None:
            errors = self.pool.failed_early()
            if errors:
                raise BenchError("publisher failed: " + "; ".join(errors[:3]))

    def bench_rows(self) -> int:
        """Rows of `readings` of the bench devices of this run (COPY baseline devices apart)."""
        pks = [pk for d, pk in self.device_pks.items() if "-copy-" not in d]
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return queries.count_readings(conn=conn, device_pks=pks)

    def drain(self, label: str, *, final: bool = False, timeout_s: float = 600) -> float:
        """Wait until every reading handed to the pipeline is stored; returns the seconds waited.

        The counters say when the storage processor wrote as many new rows as were handed in;
        the final drain then counts the rows in SQL until they are all there or stop coming.
        """
        stall_s = 10.0 if self.quick else 30.0
        started = time.monotonic()
        self.ui.phase(f"drain ({label})", None)
        last_progress, last_value = started, -1.0
        while True:
            snap = self.snap()
            backlog = self.backlog(snap)
            now = time.monotonic()
            self.ui.tick(None, f"backlog {backlog:,.0f} readings")
            if backlog <= 0:
                break
            if snap.processed_readings != last_value:
                last_value, last_progress = snap.processed_readings, now
            if now - last_progress > stall_s or now - started > timeout_s:
                break
            time.sleep(0.2)
        if final:
            handed, last_n = self.handed(), -1
            last_progress = time.monotonic()
            while True:
                n = self.bench_rows()
                self.ui.tick(None, f"{handed - n:,} readings not in the database yet")
                if n >= handed:
                    break
                if n != last_n:
                    last_n, last_progress = n, time.monotonic()
                if time.monotonic() - last_progress > stall_s:
                    break
                time.sleep(1.0)
        waited = time.monotonic() - started
        end = self.snap()
        self.dup_marks.append((label, end.duplicate_readings))
        left = self.backlog(end)
        self.ui.finish(f"drained in {waited:.1f} s" if left <= 0
                       else f"{left:,.0f} readings not counted as stored after {waited:.1f} s")
        return waited

    def catch_up(self, label: str, *, bootstrap: str,
                 groups: dict[str, list[str]]) -> tuple[float, int, bool]:
        """Wait until each consumer group has committed what is on its topics (`settle`).

        The storage figure's feed and the maximum's overload leave a backlog to the processors
        that read readings besides storage (detection): the latency phase is to measure half
        load, not their catch-up."""
        import asyncio

        from maillage.processors.kafka_topics import group_lag

        async def lag() -> int:
            return sum([await group_lag(bootstrap, g, t) for g, t in groups.items()])

        return self.settle(f"processors catch up ({label})", "records not yet committed",
                           lambda: asyncio.run(lag()))

    def rollups_drained(self, label: str) -> tuple[float, int, bool]:
        """Wait until the rollup queues are empty (`settle`): the maintenance processor has
        recomputed what the earlier phases queued.

        The storage figure stores some 2.5 million rows in half a minute: recomputing their
        rollups takes the refresher a third of a core for 15-20 s, which would otherwise be
        measured as part of the latency phase's half load."""
        from maillage.db import rollups

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            # A refresh pass deletes its queue rows when it commits: give a long pass time.
            return self.settle(f"rollups caught up ({label})", "rollup queue entries",
                               lambda: sum(rollups.pending(conn)), steady_s=20.0)

    def settle(self, phase: str, unit: str, measure: Callable[[], int], *,
               steady_s: float = 5.0, timeout_s: float = 300.0) -> tuple[float, int, bool]:
        """Poll `measure` until it is 0, or has not fallen for `steady_s` (a running stack's live
        traffic keeps some work queued); returns the seconds waited, what is left, and whether
        it settled (False: still falling after `timeout_s`)."""
        started = time.monotonic()
        self.ui.phase(phase, None)
        lowest, lowest_at = measure(), started
        left = lowest
        while left > 0:
            now = time.monotonic()
            if now - lowest_at >= steady_s or now - started > timeout_s:
                break
            time.sleep(0.5)
            left = measure()
            self.ui.tick(None, f"{left:,} {unit}")
            if left < lowest:
                lowest, lowest_at = left, time.monotonic()
        waited = time.monotonic() - started
        settled = left <= 0 or time.monotonic() - lowest_at >= steady_s
        self.ui.finish(f"caught up in {waited:.1f} s" if left <= 0 else
                       f"steady at {left:,} {unit} after {waited:.1f} s" if settled else
                       f"{left:,} {unit} left after {waited:.0f} s")
        return waited, left, settled
