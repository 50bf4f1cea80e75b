"""Escalation: an alert nobody acknowledged goes to the next level of its tenant's policy.

A policy per tenant and kind (`'*'` the default) gives `levels_s`: `levels_s[i]` seconds after
the alert opened, unacknowledged, level i+1 is notified (level 0 is notified at opening). The
tick runs in the alerting process every `alert_escalation_tick_s` on the wall clock, from the
database only (`alerts.next_escalation_at`), under an advisory lock so that one process
escalates at a time. Each escalation writes the level, an `escalated` event and the outbox rows
of that level's subscriptions in one transaction. During a tenant's quiet hours (its local time)
a non-critical energy alert waits until they end; care and critical alerts never wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from maillage.db import alerting as db
from maillage.processors.alerting.outbox import notification_payload
from maillage.processors.tasks import every

log = logging.getLogger(__name__)


def delay_to(levels: Sequence[int], level: int) -> float | None:
    """Seconds from reaching `level` to the next escalation (None: `level` is the last)."""
    if level >= len(levels):
        return None
    return float(max(0, levels[level] - (levels[level - 1] if level > 0 else 0)))


def may_wait(severity: str, care: bool) -> bool:
    """Quiet hours delay only non-critical energy alerts."""
    return not care and severity != "critical"


def quiet_until(now: datetime, tz: str, quiet_from: time | None,
                quiet_to: time | None) -> datetime | None:
    """The end of the quiet hours `now` falls in (tenant local time), else None."""
    if quiet_from is None or quiet_to is None or quiet_from == quiet_to:
        return None
    local = now.astimezone(ZoneInfo(tz))
    t = local.time().replace(tzinfo=None)
    if quiet_from < quiet_to:
        inside = quiet_from <= t < quiet_to
    else:  # the window spans midnight, e.g. 22:00-07:00
        inside = t >= quiet_from or t < quiet_to
    if not inside:
        return None
    end = local.replace(hour=quiet_to.hour, minute=quiet_to.minute, second=quiet_to.second,
                        microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(UTC)


def escalate_due(conn: psycopg.Connection, now: datetime | None = None) -> int:
    """One tick: escalate (or postpone) every due alert; returns how many escalated."""
    now = now or datetime.now(UTC)
    done = 0
    with conn.transaction():
        if not db.try_escalation_lock(conn=conn):
            return 0  # another alerting process escalates
        db.lock_events(conn=conn)
        for a in db.due_escalations(conn=conn):
            pol = db.policy(conn=conn, tenant=a["tenant_id"], kind=a["kind"])
            if pol is None:
                db.escalate(conn=conn, alert_id=a["id"], level=a["escalation_level"], next_in_s=None)
                continue
            levels, qf, qt = pol
            if may_wait(a["severity"], a["care"]):
                until = quiet_until(now, a["timezone"], qf, qt)
                if until is not None:
                    db.postpone_escalation(conn=conn, alert_id=a["id"], until=until)
                    continue
            level = a["escalation_level"] + 1
            db.escalate(conn=conn, alert_id=a["id"], level=level,
                        next_in_s=delay_to(levels, level))
            event_id, snapshot = db.add_event(conn=conn, alert_id=a["id"], action="escalated",
                                              detail={"level": level})
            db.enqueue_notifications(
                conn=conn, alert_id=a["id"], event_id=event_id, tenant=a["tenant_id"],
                kind=a["kind"], care=a["care"], level=level,
                payload=notification_payload("escalated", level, event_id, snapshot))
            log.info("alert %s (%s, tenant %s) escalated to level %d", a["id"], a["kind"],
                     a["tenant_id"], level)
            done += 1
    return done


async def run(database_url: str, stop: asyncio.Event, *, tick_s: float = 1.0) -> None:
    """Escalate every `tick_s` until `stop` is set."""
    await every(database_url, escalate_due, stop, tick_s=tick_s)
