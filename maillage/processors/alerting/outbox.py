"""The notification sender: delivers `notification_outbox` rows at least once.

Outbox rows are written in the transaction of the alert change they announce (`lifecycle.py`,
`escalation.py`), so a crash loses none. The sender claims due rows for a lease (attempts + 1,
`next_attempt_at` pushed past the lease), delivers them concurrently, and records each attempt
(`notification_attempts`) with its outcome: delivered, retried after an exponential back-off with
jitter, or given up once the retry budget (24 h by default) since the row was written is spent.
A sender killed mid-delivery leaves its rows claimed; they are due again when the lease ends and
are sent again with the same `notification_id` (the documented at-least-once; each outcome is
recorded as soon as it is known, so only what was in flight is repeated). Woken by
`NOTIFY alert_outbox`, and at the next due row's time anyway.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
from prometheus_client import Counter

from maillage.db import alerting as db
from maillage.processors.alerting.notify import Outcome, email, webhook
from maillage.processors.alerting.settings import AlertingSettings

log = logging.getLogger(__name__)

SENT = Counter("maillage_alert_notifications", "Notification delivery attempts",
               ["channel", "outcome"])


def notification_payload(event: str, level: int, event_id: int,
                         alert: dict[str, Any]) -> dict[str, Any]:
    """What every channel is given (the outbox adds `notification_id`)."""
    return {"event": event, "level": level, "event_id": event_id, "alert": alert}


def body(payload: dict[str, Any]) -> bytes:
    """The webhook body: the same bytes at every attempt (sorted keys), hence the same signature."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def backoff_s(attempts: int, *, base_s: float, cap_s: float,
              rng: random.Random | None = None) -> float:
    """Delay before the next attempt after `attempts` failed ones: doubling, capped, with
    jitter (half to full) so that receivers coming back are not hit by every sender at once."""
    delay = min(cap_s, base_s * 2 ** max(0, attempts - 1))
    return float(delay * (0.5 + 0.5 * (rng or random).random()))


class Sender:
    """Delivers due outbox rows until stopped (see the module docstring)."""

    def __init__(self, database_url: str, settings: AlertingSettings, *, batch: int = 50,
                 lease_s: float | None = None, poll_s: float = 5.0) -> None:
        self.url, self.settings, self.batch, self.poll_s = database_url, settings, batch, poll_s
        self.lease_s = lease_s if lease_s is not None else 3 * settings.alert_send_timeout_s + 5
        self.delivered = self.failed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set."""
        conn = await asyncio.to_thread(db.connect, self.url)
        listen = await asyncio.to_thread(db.connect, self.url)
        db.listen_outbox(conn=listen)
        try:
            async with httpx.AsyncClient(timeout=self.settings.alert_send_timeout_s) as client:
                while not stop.is_set():
                    if await self.drain(conn, client):
                        continue
                    wait = await asyncio.to_thread(db.next_due_in, conn=conn)
                    wait = self.poll_s if wait is None else min(self.poll_s, wait)
                    # In short slices: a stop is noticed within half a second.
                    until = time.monotonic() + wait
                    while not stop.is_set() and time.monotonic() < until:
                        if await asyncio.to_thread(_wait_notify, listen,
                                                   min(0.5, until - time.monotonic())):
                            break
        finally:
            conn.close()
            listen.close()
            log.info("sender stopped: %d delivered, %d given up", self.delivered, self.failed)

    async def drain(self, conn: psycopg.Connection, client: httpx.AsyncClient) -> int:
        """Claim and deliver one batch of due rows; returns how many were claimed."""
        rows = await asyncio.to_thread(db.claim_due, conn=conn, lease_s=self.lease_s,
                                       limit=self.batch)
        if not rows:
            return 0
        # Each outcome is recorded as soon as it is known: a crash repeats only what was in flight.
        for done in asyncio.as_completed([self._deliver(client, r) for r in rows]):
            row, outcome = await done
            await asyncio.to_thread(self._record, conn, [row], [outcome])
        return len(rows)

    async def _deliver(self, client: httpx.AsyncClient,
                       row: dict[str, Any]) -> tuple[dict[str, Any], Outcome]:
        return row, await self._send(client, row)

    async def _send(self, client: httpx.AsyncClient, row: dict[str, Any]) -> Outcome:
        payload = row["payload"]
        try:
            if row["channel"] == "webhook":
                return await webhook.send(client, url=row["target"], secret=row["secret"],
                                          body=body(payload),
                                          notification_id=row["notification_id"])
            return await email.send(self.settings, to=row["target"], payload=payload)
        except Exception as exc:  # a bug in one delivery must not stop the others
            log.exception("notification %s: delivery failed", row["notification_id"])
            return Outcome(False, f"{type(exc).__name__}: {exc}"[:500])

    def _record(self, conn: psycopg.Connection, rows: list[dict[str, Any]],
                outcomes: list[Outcome]) -> None:
        now = datetime.now(UTC)
        s = self.settings
        with conn.transaction():
            for row, out in zip(rows, outcomes, strict=True):
                retry: float | None = None
                if not out.ok:
                    spent = (now - row["created_at"]).total_seconds()
                    if out.retry and spent < s.alert_retry_budget_s:
                        retry = backoff_s(row["attempts"], base_s=s.alert_retry_base_s,
                                          cap_s=s.alert_retry_cap_s)
                db.record_attempt(conn=conn, outbox_id=row["id"], ok=out.ok, detail=out.detail,
                                  retry_in_s=retry)
                outcome = "delivered" if out.ok else ("retry" if retry is not None else "failed")
                SENT.labels(row["channel"], outcome).inc()
                if out.ok:
                    self.delivered += 1
                elif retry is None:
                    self.failed += 1
                    log.error("notification %s to %s given up after %d attempts: %s",
                              row["notification_id"], row["channel"], row["attempts"], out.detail)
                else:
                    log.warning("notification %s to %s failed (attempt %d: %s); next in %.0f s",
                                row["notification_id"], row["channel"], row["attempts"],
                                out.detail, retry)


def _wait_notify(conn: psycopg.Connection, timeout: float) -> bool:
    """Wait for a NOTIFY up to `timeout` seconds; whether one came."""
    return any(True for _ in conn.notifies(timeout=max(0.0, timeout), stop_after=1))
