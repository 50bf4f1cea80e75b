"""The alerting processor's SQL: alerts from anomalies, escalation, the notification outbox.

Every function runs inside the caller's transaction (the processor commits one batch of
transitions, or one escalation tick, at a time). A transaction that writes `alert_events` first
takes `EVENT_ORDER_LOCK` (as the API's writers do, `db/alerts.py`): event ids then commit in
increasing order, and taking it before any row lock avoids a deadlock with a person's ack.
Events are announced with `NOTIFY alert_events, '<id>'` and new outbox rows with
`NOTIFY alert_outbox` (both delivered at commit).
"""

from __future__ import annotations

import logging
from datetime import datetime, time
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from maillage.db.alerts import CHANNEL, EVENT_ORDER_LOCK, INSERT_EVENT_SQL

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "alert_outbox"
"""NOTIFY channel of new `notification_outbox` rows (payload empty); the sender listens."""
ESCALATION_LOCK = 0x6D61_696C_6573_6361  # "mailesca"
"""Advisory lock of the escalation tick: one alerting process escalates at a time."""

_US = "('epoch'::timestamptz + %(at_us)s * interval '1 microsecond')"
_SEVERITY_MAX = ("CASE WHEN array_position(ARRAY['info','warning','critical'], %(severity)s) > "
                 "array_position(ARRAY['info','warning','critical'], severity) "
                 "THEN %(severity)s ELSE severity END")
_ALERT_COLUMNS = ("id, tenant_id, group_key, kind, severity, device_id, grp, care, state, count, "
                  "last_anomaly_id, escalation_level, next_escalation_at, resolved_by, resolved_at")


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection (each function's caller opens its transactions)."""
    return psycopg.connect(url, autocommit=True)


def lock_events(*, conn: psycopg.Connection) -> None:
    """Take the event-order lock for the rest of the transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_ORDER_LOCK,))


def try_escalation_lock(*, conn: psycopg.Connection) -> bool:
    """Take the escalation lock for the transaction if no other process holds it."""
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ESCALATION_LOCK,)).fetchone()
    return bool(row and row[0])


def claim_transition(*, conn: psycopg.Connection, event_id: str) -> bool:
    """Record a transition as applied; False when it already was (a replay: skip it)."""
    cur = conn.execute("INSERT INTO alerting_processed (event_id) VALUES (%s) "
                       "ON CONFLICT (event_id) DO NOTHING", (event_id,))
    return cur.rowcount == 1


def tenant_context(*, conn: psycopg.Connection, tenant: str,
                   device_id: str) -> tuple[str, bool] | None:
    """(tenant time zone, whether the device is a care device), or None for an unknown tenant."""
    row = conn.execute(
        "SELECT t.timezone, coalesce((SELECT d.type LIKE 'care\\_%%' FROM devices d "
        "WHERE d.tenant_id = t.id AND d.device_id = %s), false) FROM tenants t WHERE t.id = %s",
        (device_id, tenant)).fetchone()
    return (row[0], bool(row[1])) if row else None


def live_alert(*, conn: psycopg.Connection, tenant: str, group_key: str) -> dict[str, Any] | None:
    """The open or acknowledged alert of a problem, locked for the transaction."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE tenant_id = %s AND "
                       "group_key = %s AND state <> 'resolved' FOR UPDATE",
                       (tenant, group_key)).fetchone()


def recently_cleared(*, conn: psycopg.Connection, tenant: str, group_key: str,
                     hold_s: float) -> dict[str, Any] | None:
    """The latest alert of a problem resolved by the system less than `hold_s` ago, locked."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE tenant_id = %s AND group_key = %s "
        "AND state = 'resolved' AND resolved_by = 'system' "
        "AND resolved_at > now() - %s * interval '1 second' "
        "ORDER BY resolved_at DESC LIMIT 1 FOR UPDATE", (tenant, group_key, hold_s)).fetchone()


def open_alert(*, conn: psycopg.Connection, tenant: str, group_key: str, kind: str,
               severity: str, device_id: str, grp: str | None, care: bool, at_us: int,
               anomaly_id: str, escalate_in_s: float | None) -> int | None:
    """Insert a new open alert; its id, or None when another process just opened one for the
    problem (its transaction committed after ours began)."""
    row = conn.execute(
        "INSERT INTO alerts (tenant_id, group_key, kind, severity, device_id, grp, care, state, "
        "first_at, last_at, last_anomaly_id, next_escalation_at) "
        f"VALUES (%(tenant)s, %(key)s, %(kind)s, %(severity)s, %(device)s, %(grp)s, %(care)s, "
        f"'open', {_US}, {_US}, %(anomaly)s, "
        "now() + %(esc)s * interval '1 second') "
        "ON CONFLICT (tenant_id, group_key) WHERE state <> 'resolved' DO NOTHING RETURNING id",
        {"tenant": tenant, "key": group_key, "kind": kind, "severity": severity,
         "device": device_id, "grp": grp, "care": care, "at_us": at_us, "anomaly": anomaly_id,
         "esc": escalate_in_s}).fetchone()
    return None if row is None else int(row[0])


def repeat_alert(*, conn: psycopg.Connection, alert_id: int, at_us: int, anomaly_id: str,
                 severity: str) -> None:
    """One more occurrence on a live alert: count, latest start, severity (never lowered)."""
    conn.execute(
        f"UPDATE alerts SET count = count + 1, last_at = greatest(last_at, {_US}), "
        f"last_anomaly_id = %(anomaly)s, severity = {_SEVERITY_MAX}, version = version + 1, "
        "updated_at = now() WHERE id = %(id)s",
        {"id": alert_id, "at_us": at_us, "anomaly": anomaly_id, "severity": severity})


def raise_severity(*, conn: psycopg.Connection, alert_id: int, severity: str) -> bool:
    """Raise a live alert's severity; False when it already was as high."""
    cur = conn.execute(
        f"UPDATE alerts SET severity = {_SEVERITY_MAX}, version = version + 1, "
        f"updated_at = now() WHERE id = %(id)s AND severity <> {_SEVERITY_MAX}",
        {"id": alert_id, "severity": severity})
    return cur.rowcount == 1


def reopen_alert(*, conn: psycopg.Connection, alert_id: int, at_us: int, anomaly_id: str,
                 severity: str, escalate_in_s: float | None) -> None:
    """An alert the system resolved comes back (flapping): open again, one more occurrence."""
    conn.execute(
        f"UPDATE alerts SET state = 'open', count = count + 1, "
        f"last_at = greatest(last_at, {_US}), last_anomaly_id = %(anomaly)s, "
        f"severity = {_SEVERITY_MAX}, resolved_at = NULL, resolved_by = NULL, "
        "acknowledged_at = NULL, acknowledged_by = NULL, "
        "next_escalation_at = now() + %(esc)s * interval '1 second', "
        "version = version + 1, updated_at = now() WHERE id = %(id)s",
        {"id": alert_id, "at_us": at_us, "anomaly": anomaly_id, "severity": severity,
         "esc": escalate_in_s})


def resolve_by_system(*, conn: psycopg.Connection, alert_id: int) -> None:
    """The anomaly cleared: resolved by 'system', nothing more to escalate."""
    conn.execute("UPDATE alerts SET state = 'resolved', resolved_at = now(), "
                 "resolved_by = 'system', next_escalation_at = NULL, version = version + 1, "
                 "updated_at = now() WHERE id = %s", (alert_id,))


def add_event(*, conn: psycopg.Connection, alert_id: int, action: str,
              detail: dict[str, Any] | None = None, actor: str = "system") -> tuple[int, dict[str, Any]]:
    """Append an `alert_events` row with the alert's snapshot and NOTIFY it; (id, snapshot)."""
    row = conn.execute(f"{INSERT_EVENT_SQL} RETURNING id, snapshot",
                       (actor, action, Jsonb(detail or {}), alert_id)).fetchone()
    assert row is not None
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(row[0])))
    return int(row[0]), row[1]


_NOTIFICATION_ID = "(%(alert)s::text || ':' || %(event)s::text || ':' || s.id::text)"


def enqueue_notifications(*, conn: psycopg.Connection, alert_id: int, event_id: int,
                          tenant: str, kind: str, care: bool, level: int,
                          payload: dict[str, Any], not_before: datetime | None = None) -> int:
    """One outbox row per active subscription of the tenant at `level` matching the alert
    (care alerts to care subscriptions only, energy alerts to the others; `kinds` filter);
    `notification_id` is '<alert>:<event>:<subscription>'. Returns the rows added."""
    cur = conn.execute(
        "INSERT INTO notification_outbox (notification_id, subscription_id, alert_id, payload, "
        "next_attempt_at) "
        f"SELECT {_NOTIFICATION_ID}, s.id, %(alert)s, "
        f"%(payload)s || jsonb_build_object('notification_id', {_NOTIFICATION_ID}), "
        "greatest(now(), coalesce(%(not_before)s, now())) "
        "FROM notification_subscriptions s WHERE s.tenant_id = %(tenant)s AND s.active "
        "AND s.level = %(level)s AND s.care = %(care)s "
        "AND (s.kinds IS NULL OR %(kind)s = ANY (s.kinds)) ORDER BY s.id "
        "ON CONFLICT (notification_id) DO NOTHING",
        {"alert": alert_id, "event": event_id, "payload": Jsonb(payload), "tenant": tenant,
         "level": level, "care": care, "kind": kind, "not_before": not_before})
    if cur.rowcount:
        conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))
    return cur.rowcount


def policy(*, conn: psycopg.Connection, tenant: str,
           kind: str) -> tuple[list[int], time | None, time | None] | None:
    """The escalation policy of a tenant for a kind (else its '*' one): (levels_s, quiet)."""
    row = conn.execute(
        "SELECT levels_s, quiet_from, quiet_to FROM escalation_policies WHERE tenant_id = %s "
        "AND kind IN (%s, '*') ORDER BY kind = '*' LIMIT 1", (tenant, kind)).fetchone()
    return (list(row[0]), row[1], row[2]) if row else None


def due_escalations(*, conn: psycopg.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Open alerts whose escalation is due, locked (SKIP LOCKED: a person's ack goes first)."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT a.id, a.tenant_id, a.kind, a.severity, a.care, a.escalation_level, "
        "a.opened_at, t.timezone FROM alerts a JOIN tenants t ON t.id = a.tenant_id "
        "WHERE a.next_escalation_at <= now() AND a.state = 'open' "
        "ORDER BY a.next_escalation_at LIMIT %s FOR UPDATE OF a SKIP LOCKED", (limit,)).fetchall()


def escalate(*, conn: psycopg.Connection, alert_id: int, level: int,
             next_in_s: float | None) -> None:
    """Move an alert to `level`; its next escalation in `next_in_s` seconds (None: last)."""
    conn.execute("UPDATE alerts SET escalation_level = %s, "
                 "next_escalation_at = now() + %s * interval '1 second', "
                 "version = version + 1, updated_at = now() WHERE id = %s",
                 (level, next_in_s, alert_id))


def postpone_escalation(*, conn: psycopg.Connection, alert_id: int, until: datetime) -> None:
    """Quiet hours: the escalation waits until `until` (no version change: nothing shown moved)."""
    conn.execute("UPDATE alerts SET next_escalation_at = %s WHERE id = %s", (until, alert_id))


def prune_processed(*, conn: psycopg.Connection, keep_days: int = 7) -> int:
    """Forget applied transitions older than `keep_days` (replays do not reach that far)."""
    cur = conn.execute("DELETE FROM alerting_processed WHERE processed_at < "
                       "now() - %s * interval '1 day'", (keep_days,))
    return cur.rowcount


# -- the sender ------------------------------------------------------------------------------

def listen_outbox(*, conn: psycopg.Connection) -> None:
    """LISTEN for new outbox rows on an autocommit connection of its own."""
    conn.execute(f"LISTEN {OUTBOX_CHANNEL}")


def claim_due(*, conn: psycopg.Connection, lease_s: float, limit: int = 50) -> list[dict[str, Any]]:
    """Take due outbox rows for `lease_s` seconds (a crashed sender's rows come back after it):
    attempts + 1, with their subscription's channel, target and secret."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "WITH due AS (SELECT id FROM notification_outbox WHERE delivered_at IS NULL "
        "AND failed_at IS NULL AND next_attempt_at <= now() ORDER BY next_attempt_at "
        "LIMIT %s FOR UPDATE SKIP LOCKED) "
        "UPDATE notification_outbox o SET attempts = o.attempts + 1, "
        "next_attempt_at = now() + %s * interval '1 second' FROM due, notification_subscriptions s "
        "WHERE o.id = due.id AND s.id = o.subscription_id RETURNING o.id, o.notification_id, "
        "o.payload, o.attempts, o.created_at, s.channel, s.target, s.secret",
        (limit, lease_s)).fetchall()


def record_attempt(*, conn: psycopg.Connection, outbox_id: int, ok: bool, detail: str,
                   retry_in_s: float | None) -> None:
    """Record one delivery attempt: delivered, retried in `retry_in_s`, or given up (None)."""
    conn.execute("INSERT INTO notification_attempts (outbox_id, ok, detail) VALUES (%s, %s, %s)",
                 (outbox_id, ok, detail[:1000]))
    if ok:
        conn.execute("UPDATE notification_outbox SET delivered_at = now() WHERE id = %s",
                     (outbox_id,))
    elif retry_in_s is None:
        conn.execute("UPDATE notification_outbox SET failed_at = now() WHERE id = %s",
                     (outbox_id,))
    else:
        conn.execute("UPDATE notification_outbox SET next_attempt_at = now() + %s * "
                     "interval '1 second' WHERE id = %s", (retry_in_s, outbox_id))


def next_due_in(*, conn: psycopg.Connection) -> float | None:
    """Seconds until the next outbox row is due (0 if one is), None when none waits."""
    row = conn.execute("SELECT extract(epoch FROM min(next_attempt_at) - now()) "
                       "FROM notification_outbox WHERE delivered_at IS NULL "
                       "AND failed_at IS NULL").fetchone()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))


# -- subscriptions and policies (the CLI) ----------------------------------------------------

SUBSCRIPTION_COLUMNS = ("id", "tenant_id", "channel", "target", "level", "care", "kinds",
                        "active", "created_at")


def add_subscription(*, conn: psycopg.Connection, tenant: str, channel: str, target: str,
                     secret: str | None, level: int, care: bool,
                     kinds: list[str] | None) -> int:
    """A new subscription; its id."""
    row = conn.execute(
        "INSERT INTO notification_subscriptions (tenant_id, channel, target, secret, level, "
        "care, kinds) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (tenant, channel, target, secret, level, care, kinds)).fetchone()
    assert row is not None
    return int(row[0])


def list_subscriptions(*, conn: psycopg.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """Subscriptions (without their secrets), of one tenant or all."""
    rows = conn.execute(
        f"SELECT {', '.join(SUBSCRIPTION_COLUMNS)} FROM notification_subscriptions "
        "WHERE %(t)s::text IS NULL OR tenant_id = %(t)s ORDER BY tenant_id, level, id",
        {"t": tenant}).fetchall()
    return [dict(zip(SUBSCRIPTION_COLUMNS, r, strict=True)) for r in rows]


def remove_subscription(*, conn: psycopg.Connection, subscription_id: int) -> bool:
    """Deactivate a subscription (its outbox rows and attempts stay for the audit)."""
    cur = conn.execute("UPDATE notification_subscriptions SET active = false WHERE id = %s "
                       "AND active", (subscription_id,))
    return cur.rowcount == 1


def set_policy(*, conn: psycopg.Connection, tenant: str, kind: str, levels_s: list[int],
               quiet_from: time | None, quiet_to: time | None) -> None:
    """Create or replace the escalation policy of a tenant and kind ('*': the default)."""
    conn.execute(
        "INSERT INTO escalation_policies (tenant_id, kind, levels_s, quiet_from, quiet_to) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, kind) DO UPDATE SET "
        "levels_s = EXCLUDED.levels_s, quiet_from = EXCLUDED.quiet_from, "
        "quiet_to = EXCLUDED.quiet_to", (tenant, kind, levels_s, quiet_from, quiet_to))


def list_policies(*, conn: psycopg.Connection, tenant: str | None) -> list[dict[str, Any]]:
    """Escalation policies, of one tenant or all."""
    cols = ("tenant_id", "kind", "levels_s", "quiet_from", "quiet_to")
    rows = conn.execute(
        f"SELECT {', '.join(cols)} FROM escalation_policies "
        "WHERE %(t)s::text IS NULL OR tenant_id = %(t)s ORDER BY tenant_id, kind",
        {"t": tenant}).fetchall()
    return [dict(zip(cols, r, strict=True)) for r in rows]


def remove_policy(*, conn: psycopg.Connection, tenant: str, kind: str) -> bool:
    """Delete a policy; False when there was none."""
    cur = conn.execute("DELETE FROM escalation_policies WHERE tenant_id = %s AND kind = %s",
                       (tenant, kind))
    return cur.rowcount == 1
