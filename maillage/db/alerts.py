"""Alerts as the API reads and changes them (the alerting processor writes them: `db/alerting.py`).

Reads: pages of alerts (latest anomaly first), one alert with its events (history and comments),
statistics of time to acknowledge and to resolve, and the events after a given one (the live
stream's replay). Writes: a person's ack, resolve or comment, each one transaction that changes
the `alerts` row (version + 1, who and when, `next_escalation_at` cleared on ack and resolve),
inserts the `alert_events` row with the alert's snapshot and sends `NOTIFY alert_events, '<id>'`
(delivered at commit).

Every read takes the same visibility filter: tenant (None: every tenant, for an all-tenants
admin) and care (None: both, True: care only, False: no care).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

CHANNEL = "alert_events"
"""NOTIFY channel: payload the new `alert_events.id`."""

EVENT_ORDER_LOCK = 0x6D61_696C_616C_6576  # "mailalev"
"""Advisory lock every writer of `alert_events` (here and `db/alerting.py`) takes for its
transaction, so that event ids commit in increasing order and a stream resuming after id N never
skips a later-committed M < N."""

COLUMNS = ("id", "tenant_id", "group_key", "kind", "severity", "device_id", "grp", "care", "state",
           "count", "first_at", "last_at", "last_anomaly_id", "opened_at", "acknowledged_at",
           "acknowledged_by", "resolved_at", "resolved_by", "escalation_level",
           "next_escalation_at", "version", "updated_at")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"

SNAPSHOT_SQL = (
    "jsonb_build_object('id', a.id, 'tenant', a.tenant_id, 'device_id', a.device_id, "
    "'kind', a.kind, 'severity', a.severity, 'state', a.state, 'count', a.count, "
    "'first_at', a.first_at, 'last_at', a.last_at, 'opened_at', a.opened_at, "
    "'acknowledged_at', a.acknowledged_at, 'acknowledged_by', a.acknowledged_by, "
    "'resolved_at', a.resolved_at, 'resolved_by', a.resolved_by, "
    "'escalation_level', a.escalation_level, 'group', a.grp)")
"""The alert as the API shows it (interfaces.md), over `alerts a` (what `alert_events.snapshot`
holds)."""
INSERT_EVENT_SQL = (
    "INSERT INTO alert_events (alert_id, tenant_id, care, actor, action, detail, snapshot) "
    f"SELECT a.id, a.tenant_id, a.care, %s, %s, %s, {SNAPSHOT_SQL} FROM alerts a WHERE a.id = %s")
"""Append an alert's event with its snapshot; parameters (actor, action, detail, alert id).
Both writers (a person's action here, the processor in `db/alerting.py`) add their RETURNING."""

_SCOPE = ("(%(tenant)s::text IS NULL OR tenant_id = %(tenant)s) "
          "AND (%(care)s::boolean IS NULL OR care = %(care)s)")

# The filters of the lists, each used only when given: a query text per combination, so that
# PostgreSQL plans each with the indexes it can use (a generic `$1 IS NULL OR col = $1` cannot).
_FILTERS = {
    "tenant": "tenant_id = %(tenant)s", "care": "care = %(care)s", "state": "state = %(state)s",
    "kind": "kind = %(kind)s", "severity": "severity = %(severity)s",
    "device": "device_id = %(device)s", "end": "first_at < %(end)s",
    "start": "last_at >= %(start)s", "a_ts": "(last_at, id) < (%(a_ts)s, %(a_id)s)",
    "opened_from": "opened_at >= %(opened_from)s", "opened_to": "opened_at < %(opened_to)s",
    "after": "(id > %(after)s OR id = ANY(%(also)s))",
}


def _where(values: dict[str, Any]) -> str:
    """`AND` of the filters whose value is given (`_FILTERS`)."""
    return " AND ".join(_FILTERS[k] for k, v in values.items() if k in _FILTERS and v is not None
                        ) or "true"


def _rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


async def list_alerts(*, conn: psycopg.AsyncConnection, tenant: str | None, care: bool | None,
                      state: str | None = None, kind: str | None = None,
                      severity: str | None = None, device: str | None = None,
                      start: datetime | None = None, end: datetime | None = None,
                      after: tuple[datetime, int] | None = None,
                      limit: int) -> list[dict[str, Any]]:
    """Alerts with an anomaly in [start, end) (first before end, latest at or after start),
    latest anomaly first, after the cursor (last_at, id)."""
    a_ts, a_id = after if after is not None else (None, None)
    values = {"tenant": tenant, "care": care, "state": state, "kind": kind, "severity": severity,
              "device": device, "start": start, "end": end, "a_ts": a_ts, "a_id": a_id,
              "limit": limit}
    cur = await conn.execute(
        f"{_SELECT} WHERE {_where(values)} ORDER BY last_at DESC, id DESC LIMIT %(limit)s", values)
    return _rows(await cur.fetchall())


async def get_alert(*, conn: psycopg.AsyncConnection, alert_id: int, tenant: str | None,
                    care: bool | None) -> dict[str, Any] | None:
    """One alert by id within the caller's scope, else None."""
    cur = await conn.execute(f"{_SELECT} WHERE id = %(id)s AND {_SCOPE}",
                             {"id": alert_id, "tenant": tenant, "care": care})
    rows = _rows(await cur.fetchall())
    return rows[0] if rows else None


EVENT_COLUMNS = ("id", "at", "actor", "action", "detail")


async def alert_history(*, conn: psycopg.AsyncConnection, alert_id: int) -> list[dict[str, Any]]:
    """An alert's events (history and comments), oldest first."""
    cur = await conn.execute(
        "SELECT id, at, actor, action, detail FROM alert_events WHERE alert_id = %s ORDER BY id",
        (alert_id,))
    return [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in await cur.fetchall()]


class ActionRefused(Exception):
    """A person's action that the alert's state does not allow (the API answers 409)."""


@dataclass(frozen=True, slots=True)
class Acted:
    """What an action wrote: the alert after it and the event's id."""

    alert: dict[str, Any]
    event_id: int


# The state change and the columns each action sets; comments change no column.
_CHANGES = {
    "acknowledged": ("state = 'acknowledged', acknowledged_at = now(), acknowledged_by = %(actor)s, "
                     "next_escalation_at = NULL, version = version + 1, updated_at = now()"),
    "resolved": ("state = 'resolved', resolved_at = now(), resolved_by = %(actor)s, "
                 "next_escalation_at = NULL, version = version + 1, updated_at = now()"),
}


def _refusal(alert: dict[str, Any], action: str) -> str | None:
    """Why `action` may not be done on the alert now, or None."""
    if alert["state"] == "resolved":
        return (f"alert {alert['id']} was resolved by {alert['resolved_by']} at "
                f"{alert['resolved_at'].isoformat()}; nothing more can be done on it")
    if action == "acknowledged" and alert["state"] == "acknowledged":
        return (f"alert {alert['id']} was already acknowledged by {alert['acknowledged_by']} at "
                f"{alert['acknowledged_at'].isoformat()}")
    return None


async def act(*, conn: psycopg.AsyncConnection, alert_id: int, tenant: str | None,
              care: bool | None, action: str, actor: str,
              detail: dict[str, Any]) -> Acted | None:
    """Acknowledge, resolve or comment (`action`: acknowledged|resolved|commented) in one
    transaction; None when the alert is not in scope; `ActionRefused` when its state forbids."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_ORDER_LOCK,))
        cur = await conn.execute(f"{_SELECT} WHERE id = %(id)s AND {_SCOPE} FOR UPDATE",
                                 {"id": alert_id, "tenant": tenant, "care": care})
        rows = _rows(await cur.fetchall())
        if not rows:
            return None
        why = _refusal(rows[0], action)
        if why is not None:
            raise ActionRefused(why)
        if action in _CHANGES:
            cur = await conn.execute(
                f"UPDATE alerts SET {_CHANGES[action]} WHERE id = %(id)s RETURNING "
                f"{', '.join(COLUMNS)}", {"id": alert_id, "actor": actor})
            rows = _rows(await cur.fetchall())
        cur = await conn.execute(f"{INSERT_EVENT_SQL} RETURNING id",
                                 (actor, action, Jsonb(detail), alert_id))
        event = await cur.fetchone()
        assert event is not None  # the row is locked: it is there
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(event[0])))
    return Acted(rows[0], event[0])


STATS_COLUMNS = ("kind", "alerts", "acknowledged", "resolved", "ack_p50_s", "ack_p90_s",
                 "resolve_p50_s", "resolve_p90_s")


async def alert_stats(*, conn: psycopg.AsyncConnection, tenant: str | None, care: bool | None,
                      start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
    """Per kind, alerts opened in [start, end): how many, and p50/p90 seconds from opening to
    acknowledgement and to resolution (of those acknowledged, resolved)."""
    ack = "extract(epoch FROM acknowledged_at - opened_at)"
    res = "extract(epoch FROM resolved_at - opened_at)"
    values = {"tenant": tenant, "care": care, "opened_from": start, "opened_to": end}
    cur = await conn.execute(
        "SELECT kind, count(*), count(acknowledged_at), count(resolved_at), "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {ack}), "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {ack}), "
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {res}), "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {res}) "
        f"FROM alerts WHERE {_where(values)} GROUP BY kind ORDER BY kind", values)
    return [dict(zip(STATS_COLUMNS, r, strict=True)) for r in await cur.fetchall()]


# -- the live stream ------------------------------------------------------------------------------

STREAM_BATCH = 500
"""Events per replay query; a full batch means more may follow at once."""
STREAM_COLUMNS = ("id", "alert_id", "tenant_id", "care", "action", "snapshot")


STREAM_APPLICATION = "maillage-alert-stream"
"""`application_name` of the streams' connections (pg_stat_activity shows how many are open)."""


async def listen(*, url: str) -> psycopg.AsyncConnection:
    """A connection of its own LISTENing on `alert_events` (the caller closes it)."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                 application_name=STREAM_APPLICATION)
    await conn.execute(f"LISTEN {CHANNEL}")
    return conn


async def last_event_id(*, conn: psycopg.AsyncConnection) -> int:
    """The latest `alert_events.id` (0 when none)."""
    cur = await conn.execute("SELECT coalesce(max(id), 0) FROM alert_events")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def events_after(*, conn: psycopg.AsyncConnection, after: int, also: Sequence[int] = (),
                       tenant: str | None, care: bool | None,
                       limit: int = STREAM_BATCH) -> list[dict[str, Any]]:
    """Events in scope with id > `after`, plus the ids in `also` (notified late), oldest first."""
    values = {"after": after, "also": list(also), "tenant": tenant, "care": care, "limit": limit}
    cur = await conn.execute(
        "SELECT id, alert_id, tenant_id, care, action, snapshot FROM alert_events "
        f"WHERE {_where(values)} ORDER BY id LIMIT %(limit)s", values)
    return [dict(zip(STREAM_COLUMNS, r, strict=True)) for r in await cur.fetchall()]


async def wait_notified(*, conn: psycopg.AsyncConnection, timeout: float) -> list[int]:
    """The event ids NOTIFYed within `timeout` seconds (those already received come at once)."""
    ids: list[int] = []
    async for n in conn.notifies(timeout=timeout, stop_after=1):
        try:
            ids.append(int(n.payload))
        except ValueError:
            log.warning("alert_events: ignoring a NOTIFY with payload %r", n.payload)
    return ids


def snapshot_json(row: dict[str, Any]) -> str:
    """The stream's `data:`: the snapshot, with the action that produced it."""
    return orjson.dumps({**row["snapshot"], "action": row["action"]}).decode()
