"""The silence check on the wall clock: every few seconds, offline devices and group outages.

The detection process starts it beside its runner and stops it with the same event:

    task = asyncio.create_task(silent_job.watch(database_url=settings.database_url, stop=stop))
    ...
    stop.set(); await task

Each round runs in one transaction under a PostgreSQL advisory lock, so with several detection
processes one round runs at a time (any of them: the state is the table, not the process): it
reads the open `device_offline`/`group_offline` anomalies and every device's last receive time
and learned interval (`detection_state`, kept by the detection processor from `silent.learn`),
runs `silent.check` at the wall-clock now and writes the transitions with
`db.detection.record_transitions` (the outbox relay produces them to `maillage.anomalies`).
Any error ends the round, not the job (nor the detection process): it is logged, the
connection reopened, and the next round retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from maillage.db import anomalies as db_anomalies
from maillage.db.detection import record_transitions
from maillage.processors.detection.model import Anomaly, DeviceInfo, Kind, Severity, Transition
from maillage.processors.detection.silent import Seen, SilentState, check

log = logging.getLogger(__name__)


def wall_us() -> int:
    return time.time_ns() // 1000


def _seen(row: Sequence[Any], zones: dict[str, ZoneInfo]) -> Seen:
    r = dict(zip(db_anomalies.SEEN_COLUMNS, row, strict=True))
    tz = r["timezone"] or "Europe/Paris"
    zone = zones.get(tz) or zones.setdefault(tz, ZoneInfo(tz))
    info = DeviceInfo(tenant=r["tenant_id"], device_id=r["device_id"], type=r["type"], tz=zone,
                      commune=r["commune"], district=r["district"], site=r["site"],
                      dwelling=r["dwelling"], meta=r["meta"] or {},
                      expected_interval_s=r["expected_interval_s"])
    return Seen(info, r["last_rx_us"], r["interval_s"])


def _open(row: dict[str, Any]) -> Anomaly:
    return Anomaly(tenant=row["tenant"], device_id=row["device_id"], kind=Kind(row["kind"]),
                   severity=Severity(row["severity"]), score=row["score"],
                   start_us=row["start_us"], end_us=None, evidence=row["evidence"],
                   group=row["group"])


def run_once(conn: psycopg.Connection, now_us: int) -> list[Transition] | None:
    """One round at `now_us` in one transaction; None when another process holds the lock."""
    with conn.transaction():
        if not db_anomalies.try_silent_lock(conn=conn):
            return None
        state = SilentState.from_anomalies(_open(r) for r in db_anomalies.open_offline(conn=conn))
        zones: dict[str, ZoneInfo] = {}
        seen = [_seen(r, zones) for r in db_anomalies.device_silence(conn=conn)]
        transitions = check(state, now_us, seen)
        care_types = {(s.device.tenant, s.device.device_id): s.device.is_care for s in seen}
        # Transition is TransitionLike (frozen fields do not satisfy the protocol's plain ones).
        record_transitions(conn=conn, transitions=transitions,
                           care=[_is_care(t, care_types) for t in transitions])
    for t in transitions:
        a = t.anomaly
        log.info("%s %s tenant=%s device=%s group=%s", t.change, a.kind, a.tenant, a.device_id,
                 a.group)
    return transitions


def _is_care(t: Transition, care_types: dict[tuple[str, str], bool]) -> bool:
    """Health data: a care device's silence, or a dwelling's."""
    a = t.anomaly
    return bool((a.group or "").startswith("dwelling:")
                or care_types.get((a.tenant, a.device_id), False))


def _connect(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url, autocommit=True)


async def watch(*, database_url: str, stop: asyncio.Event, period_s: float = 5.0,
                clock: Callable[[], int] = wall_us) -> None:
    """Run a silence round every `period_s` until `stop` is set (see the module docstring)."""
    conn: psycopg.Connection | None = None
    try:
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await asyncio.to_thread(_connect, database_url)
                await asyncio.to_thread(run_once, conn, clock())
            except psycopg.Error as exc:
                log.warning("silence check failed, retrying in %.0f s: %s", period_s, exc)
                if conn is not None:
                    await asyncio.to_thread(conn.close)
                    conn = None
            except Exception:  # a bad registry row must not stop the detection process with it
                log.exception("silence check failed, retrying in %.0f s", period_s)
                if conn is not None:
                    await asyncio.to_thread(conn.close)
                    conn = None
            try:
                await asyncio.wait_for(stop.wait(), timeout=period_s)
            except TimeoutError:
                pass
    finally:
        if conn is not None:
            await asyncio.to_thread(conn.close)
