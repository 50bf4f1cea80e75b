"""The alerting processor: the sink the runner drives over `maillage.anomalies`.

Each batch of transitions is applied in one transaction, in order, then the runner commits the
offsets. Per transition (`grouping.Incoming`):

- `open`: the problem (`group_key`) has a live alert (open or acknowledged) -> one more
  occurrence (count + 1, latest start, severity never lowered; the state, hence a person's ack,
  is kept). Its `repeated` event is written at most once per `alert_repeat_event_s` per alert,
  so a thousand repeats are one alert counting a thousand, not a thousand stream events.
  Else, an alert of the problem the system resolved less than `alert_flap_hold_s` ago ->
  that alert `reopened` (flapping gives one alert, not many; no new level-0 notification, its
  escalation starts again). Else a new alert `opened`, with the outbox rows of the level-0
  subscriptions in the same transaction (delayed to the end of quiet hours for a non-critical
  energy alert). An anomaly older than `alert_notify_max_age_s` (a first run over the topic's
  history) opens its alert without notifying or escalating: nobody is paged for last month.
- `update`: a rise of severity is applied to the live alert.
- `close`: when that anomaly is the live alert's latest and its kind may clear by itself (never
  a fall or a panic button: a person resolves those), the alert is resolved by `system`.

A transition is applied once: its `event_id` is recorded (`alerting_processed`) in the same
transaction, and a replay (a crash between commit and offsets, the relay's at-least-once)
changes nothing. A person's ack or resolve is never undone: a live alert keeps its state on
repeats, and a resolved alert reopens only if the system resolved it.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter

from maillage import topics
from maillage.db import alerting as db
from maillage.processors.alerting.escalation import delay_to, may_wait, quiet_until
from maillage.processors.alerting.grouping import Incoming, auto_resolves, is_care
from maillage.processors.alerting.outbox import notification_payload
from maillage.processors.alerting.settings import AlertingSettings
from maillage.processors.tasks import LazyConnection

log = logging.getLogger(__name__)

TOPICS = [topics.ANOMALIES]
GROUP = "maillage-alerting"
MAX_POISON_LOGGED = 20
PRUNE_EVERY_S = 3600.0

CHANGES = Counter("maillage_alert_changes", "Alert changes made by the alerting processor",
                  ["action"])


class AlertingSink(LazyConnection):
    """Applies anomaly transitions to alerts (see the module docstring)."""

    def __init__(self, database_url: str, settings: AlertingSettings | None = None, *,
                 max_records: int = 5000) -> None:
        self.url = database_url
        self.settings = settings or AlertingSettings()
        self.max_records = max_records
        self._conn: psycopg.Connection | None = None
        self._pending: list[tuple[str, int, int, bytes | None]] = []
        self._last_event: dict[int, float] = {}  # alert id -> monotonic time of its last event
        self._pruned_at = 0.0
        self.applied = self.replayed = self.poison = 0

    # -- the runner's sink protocol ---------------------------------------------------------

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self._pending.append((record.topic, record.partition, record.offset, record.value))

    def full(self) -> bool:
        return len(self._pending) >= self.max_records

    def flush(self) -> None:
        """Apply what was added in one transaction; raise (offsets stay uncommitted) on failure."""
        batch, self._pending = self._pending, []
        incoming = self._decode(batch)
        if incoming:
            conn = self._connection()
            try:
                with conn.transaction():
                    db.lock_events(conn=conn)
                    for inc in incoming:
                        self.apply(conn, inc)
            except psycopg.OperationalError:
                conn.close()
                raise
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            db.prune_processed(conn=self._connection())

    def _decode(self, batch: list[tuple[str, int, int, bytes | None]]) -> list[Incoming]:
        out = []
        for topic, partition, offset, value in batch:
            try:
                if value is None:
                    raise ValueError("no value")
                out.append(Incoming.from_kafka(value))
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
                self.poison += 1
                if self.poison <= MAX_POISON_LOGGED:
                    log.warning("skipping a record that is not a transition at %s[%d]@%d: %s",
                                topic, partition, offset, exc)
        return out

    # -- one transition ---------------------------------------------------------------------

    def apply(self, conn: psycopg.Connection, inc: Incoming) -> str | None:
        """Apply one transition inside the caller's transaction; the action taken, if any."""
        if not db.claim_transition(conn=conn, event_id=inc.event_id):
            self.replayed += 1
            return None
        ctx = db.tenant_context(conn=conn, tenant=inc.tenant, device_id=inc.device_id)
        if ctx is None:
            return None  # tenant deleted meanwhile
        tz, care_device = ctx
        care = is_care(inc.kind, care_device)
        self.applied += 1
        live = db.live_alert(conn=conn, tenant=inc.tenant, group_key=inc.group_key)
        if inc.change == "open":
            action = self._open(conn, inc, live, care, tz)
        elif inc.change == "update":
            action = None
            if live is not None and db.raise_severity(conn=conn, alert_id=live["id"],
                                                      severity=inc.severity):
                action = self._event(conn, live["id"], "repeated", {"severity": inc.severity},
                                     force=True)
        else:
            action = None
            if (live is not None and live["last_anomaly_id"] == inc.anomaly_id
                    and auto_resolves(inc.kind)):
                db.resolve_by_system(conn=conn, alert_id=live["id"])
                action = self._event(conn, live["id"], "resolved", {"anomaly": inc.anomaly_id},
                                     force=True)
        if action is not None:
            CHANGES.labels(action).inc()
        return action

    def _open(self, conn: psycopg.Connection, inc: Incoming, live: dict[str, Any] | None, care: bool,
              tz: str) -> str | None:
        if live is not None:
            db.repeat_alert(conn=conn, alert_id=live["id"], at_us=inc.start_us,
                            anomaly_id=inc.anomaly_id, severity=inc.severity)
            return self._event(conn, live["id"], "repeated", {"anomaly": inc.anomaly_id})
        pol = db.policy(conn=conn, tenant=inc.tenant, kind=inc.kind)
        stale = time.time() * 1e6 - inc.start_us > self.settings.alert_notify_max_age_s * 1e6
        levels = pol[0] if pol and not stale else []
        cleared = db.recently_cleared(conn=conn, tenant=inc.tenant, group_key=inc.group_key,
                                      hold_s=self.settings.alert_flap_hold_s)
        if cleared is not None:
            db.reopen_alert(conn=conn, alert_id=cleared["id"], at_us=inc.start_us,
                            anomaly_id=inc.anomaly_id, severity=inc.severity,
                            escalate_in_s=delay_to(levels, cleared["escalation_level"]))
            return self._event(conn, cleared["id"], "reopened", {"anomaly": inc.anomaly_id},
                               force=True)
        alert_id = db.open_alert(
            conn=conn, tenant=inc.tenant, group_key=inc.group_key, kind=inc.kind,
            severity=inc.severity, device_id=inc.device_id, grp=inc.group, care=care,
            at_us=inc.start_us, anomaly_id=inc.anomaly_id, escalate_in_s=delay_to(levels, 0))
        if alert_id is None:  # another alerting process opened it meanwhile: a repeat
            live = db.live_alert(conn=conn, tenant=inc.tenant, group_key=inc.group_key)
            return self._open(conn, inc, live, care, tz) if live is not None else None
        event_id, snapshot = db.add_event(conn=conn, alert_id=alert_id, action="opened",
                                          detail={"anomaly": inc.anomaly_id})
        self._last_event[alert_id] = time.monotonic()
        if stale:
            log.info("alert %d opened for an anomaly of %s: too old to notify", alert_id,
                     datetime.fromtimestamp(inc.start_us / 1e6, UTC).isoformat())
            return "opened"
        not_before = None
        if pol is not None and may_wait(inc.severity, care):
            not_before = quiet_until(datetime.now(UTC), tz, pol[1], pol[2])
        db.enqueue_notifications(conn=conn, alert_id=alert_id, event_id=event_id,
                                 tenant=inc.tenant, kind=inc.kind, care=care, level=0,
                                 payload=notification_payload("opened", 0, event_id, snapshot),
                                 not_before=not_before)
        log.info("alert %d opened: %s %s on %s/%s", alert_id, inc.severity, inc.kind,
                 inc.tenant, inc.device_id)
        return "opened"

    def _event(self, conn: psycopg.Connection, alert_id: int, action: str,
               detail: dict[str, Any], *, force: bool = False) -> str | None:
        """Write an event unless it is a `repeated` one within the rate limit."""
        now = time.monotonic()
        last = self._last_event.get(alert_id)
        if not force and last is not None and now - last < self.settings.alert_repeat_event_s:
            return None
        if len(self._last_event) > 100_000:
            self._last_event.clear()  # bounded memory; at worst one more event per alert
        self._last_event[alert_id] = now
        db.add_event(conn=conn, alert_id=alert_id, action=action, detail=detail)
        return action
