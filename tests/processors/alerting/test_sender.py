"""The sender on real receivers: a local HTTP webhook server checking signatures, a local SMTP
server (aiosmtpd); retries while the receiver is down, each attempt recorded; the budget."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

import psycopg

from maillage.db import alerting as db
from maillage.processors.alerting.lifecycle import AlertingSink
from maillage.processors.alerting.outbox import Sender, backoff_s
from maillage.processors.alerting.settings import AlertingSettings
from tests.processors.alerting.conftest import T0, alerts, records, transition
from tests.processors.alerting.receivers import SmtpReceiver, WebhookReceiver


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff_s(n, base_s=5, cap_s=60, rng=rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        full = min(60, 5 * 2 ** (n - 1))
        assert full / 2 <= d <= full


def _settings(smtp: SmtpReceiver | None = None, **kw: float) -> AlertingSettings:
    return AlertingSettings(smtp_host="127.0.0.1", smtp_port=smtp.port if smtp else 9,
                            smtp_from="alerts@maillage.test", alert_retry_base_s=0.2,
                            alert_retry_cap_s=0.5, **kw)  # type: ignore[arg-type]


def _open(db_url: str, tenant: str, *subs: tuple[str, str, str | None]) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for channel, target, secret in subs:
            db.add_subscription(conn=conn, tenant=tenant, channel=channel, target=target,
                                secret=secret, level=0, care=False, kinds=None)
    sink = AlertingSink(db_url)
    for r in records([transition(tenant, "m1", "spike", T0)]):
        sink.add(r)
    sink.flush()
    return int(alerts(db_url, tenant)[0]["id"])


async def _run_until(sender: Sender, done: Callable[[], bool], timeout: float = 20) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        for _ in range(int(timeout / 0.05)):
            if done() or task.done():
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def _outbox(db_url: str, alert_id: int) -> list[tuple[str, int, bool, bool]]:
    with psycopg.connect(db_url) as conn:
        return [(r[0], r[1], r[2], r[3]) for r in conn.execute(
            "SELECT notification_id, attempts, delivered_at IS NOT NULL, failed_at IS NOT NULL "
            "FROM notification_outbox WHERE alert_id = %s ORDER BY id", (alert_id,)).fetchall()]


def test_webhook_and_email_delivered_signed_and_named_by_pseudonym(db_url: str,
                                                                   al_tenant: str) -> None:
    hook = WebhookReceiver("s3cret").start()
    smtp = SmtpReceiver().start()
    to = f"{uuid.uuid4().hex[:8]}@maillage.test"
    try:
        alert_id = _open(db_url, al_tenant, ("webhook", hook.url, "s3cret"), ("email", to, None))
        mine = lambda: [m for m in smtp.received() if to in m[0]]  # noqa: E731
        asyncio.run(_run_until(Sender(db_url, _settings(smtp)),
                               lambda: bool(hook.received()) and bool(mine())))
        [h] = hook.received()
        assert h.signature_ok and h.notification_id.startswith(f"{alert_id}:")
        assert h.doc["notification_id"] == h.notification_id
        assert h.doc["alert"]["kind"] == "spike" and h.doc["alert"]["device_id"] == "m1"
        [(_, msg, _)] = mine()
        assert "spike" in msg["Subject"] and "m1" in msg["Subject"]
        assert msg["X-Maillage-Notification-Id"].startswith(f"{alert_id}:")
        assert f"Alert {alert_id} opened" in msg.get_payload()
        assert all(d and not f for _, _, d, f in _outbox(db_url, alert_id))
    finally:
        hook.stop()
        smtp.stop()


def _tried(db_url: str, alert_id: int) -> list[tuple[bool, str]]:
    """Every recorded delivery attempt of the alert's notifications, in order."""
    with psycopg.connect(db_url) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT ok, detail FROM notification_attempts a JOIN notification_outbox o "
            "ON o.id = a.outbox_id WHERE o.alert_id = %s ORDER BY a.id", (alert_id,)).fetchall()]


def test_receiver_down_then_up_gets_it_every_attempt_recorded(db_url: str, al_tenant: str) -> None:
    hook = WebhookReceiver("k")  # not listening yet
    alert_id = _open(db_url, al_tenant, ("webhook", hook.url, "k"))

    failed_before: list[int] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(Sender(db_url, _settings()).run(stop))
        try:
            # `attempts` counts claims (a claimed attempt may still be in flight): wait for three
            # recorded failures. A loaded machine retries more slowly.
            for _ in range(1200):
                if len(_tried(db_url, alert_id)) >= 3:
                    break
                await asyncio.sleep(0.05)
            failed_before.append(len(_tried(db_url, alert_id)))
            hook.start()
            for _ in range(200):
                if hook.received():
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task

    try:
        asyncio.run(scenario())
        [h] = hook.received()
        assert h.signature_ok
        [(nid, attempts, delivered, failed)] = _outbox(db_url, alert_id)
        assert failed_before[0] >= 3, "the receiver was never down long enough to be retried"
        assert (nid, delivered, failed) == (h.notification_id, True, False)
        tried = _tried(db_url, alert_id)
        assert len(tried) == attempts >= failed_before[0] + 1
        assert [ok for ok, _ in tried] == [False] * (attempts - 1) + [True]
        assert "ConnectError" in tried[0][1] and tried[-1][1] == "HTTP 204"
    finally:
        hook.stop()


def test_given_up_after_the_retry_budget_and_kept(db_url: str, al_tenant: str) -> None:
    hook = WebhookReceiver("k")  # never listening
    alert_id = _open(db_url, al_tenant, ("webhook", hook.url, "k"))
    asyncio.run(_run_until(Sender(db_url, _settings(alert_retry_budget_s=0.0)),
                           lambda: _outbox(db_url, alert_id)[0][3]))
    [(_, attempts, delivered, failed)] = _outbox(db_url, alert_id)
    assert (attempts, delivered, failed) == (1, False, True)
