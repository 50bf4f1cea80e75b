"""`maillage processor alerting` as a process on the real Kafka and PostgreSQL.

Acceptance 2: 1,000 repeats of one meter anomaly on `maillage.anomalies` make one alert counting
1,000. Acceptance 4: a webhook receiver down for a minute receives every notification once it is
back, signatures valid; the processor SIGKILLed mid-stream (and again mid-delivery) and restarted
loses none, and what it sends twice carries the same notification id and the same body.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from maillage import topics
from maillage.db import alerting as db
from maillage.processors.detection.model import Transition
from maillage.stack import kafka
from tests.processors.alerting.conftest import MIN, T0, alerts, transition
from tests.processors.alerting.receivers import WebhookReceiver


class AlertingProcess:
    """`maillage processor alerting` in a subprocess of its own consumer group."""

    def __init__(self, db_url: str, bootstrap: str, log: Path, **env: str) -> None:
        self.env = dict(os.environ, MAILLAGE_DATABASE_URL=db_url, MAILLAGE_KAFKA_BOOTSTRAP=bootstrap,
                        MAILLAGE_ALERTING_GROUP=f"alerting-{uuid.uuid4().hex[:8]}",
                        MAILLAGE_DATA_DIR=str(log.parent), **env)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "maillage", "processor", "alerting"],
                                         stdout=out, stderr=subprocess.STDOUT, env=self.env)

    def kill(self) -> None:
        """SIGKILL: no checkpoint, no clean stop."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def alerting(db_url: str, services: Any, tmp_path: Path) -> Iterator[Callable[..., AlertingProcess]]:
    kafka.ensure_topics_sync(services.kafka_bootstrap, 2)
    made: list[AlertingProcess] = []

    def make(**env: str) -> AlertingProcess:
        p = AlertingProcess(db_url, services.kafka_bootstrap, tmp_path / "alerting.log", **env)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


async def _produce(bootstrap: str, transitions: list[Transition]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for t in transitions:
            a = t.anomaly
            await producer.send(topics.ANOMALIES, t.to_kafka(), key=f"{a.tenant}/{a.device_id}".encode())
        await producer.flush()
    finally:
        await producer.stop()


def produce(bootstrap: str, transitions: list[Transition]) -> None:
    asyncio.run(_produce(bootstrap, transitions))


def wait_until(pred: Callable[[], bool], timeout: float, what: str,
               proc: AlertingProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and not proc.alive():
            raise AssertionError(f"the alerting process died: {proc.log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_thousand_repeats_on_kafka_make_one_alert_of_count_1000(
        db_url: str, services: Any, al_tenant: str,
        alerting: Callable[..., AlertingProcess]) -> None:
    proc = alerting()
    proc.start()
    produce(services.kafka_bootstrap,
            [transition(al_tenant, "m1", "spike", T0 + i * MIN) for i in range(1000)])

    def counted() -> bool:
        got = alerts(db_url, al_tenant)
        return bool(got) and got[0]["count"] == 1000

    wait_until(counted, 60, "count 1000", proc)
    [a] = alerts(db_url, al_tenant)
    assert (a["state"], a["kind"], a["device_id"]) == ("open", "spike", "m1")
    with psycopg.connect(db_url) as conn:
        n = conn.execute("SELECT count(*) FROM alert_events WHERE alert_id = %s",
                         (a["id"],)).fetchone()
    assert n is not None and n[0] <= 20  # one `repeated` event per minute at most, plus `opened`


KINDS = ("spike", "night_overconsumption", "zero_consumption", "meter_stuck")


@pytest.mark.slow
def test_receiver_down_a_minute_and_processor_killed_lose_nothing(
        db_url: str, services: Any, al_tenant: str,
        alerting: Callable[..., AlertingProcess]) -> None:
    """200 problems (50 meters x 4 kinds) -> 200 alerts -> 200 notifications to one webhook."""
    secret = uuid.uuid4().hex
    hook = WebhookReceiver(secret)  # down: nothing listens on its port yet
    with psycopg.connect(db_url, autocommit=True) as conn:
        for i in range(50):
            conn.execute("INSERT INTO devices (tenant_id, device_id, type, mqtt_username) "
                         "VALUES (%s, %s, 'meter', %s)", (al_tenant, f"x{i}", f"{al_tenant}-x{i}"))
        db.add_subscription(conn=conn, tenant=al_tenant, channel="webhook", target=hook.url,
                            secret=secret, level=0, care=False, kinds=None)
    opens = [transition(al_tenant, f"x{i}", k, T0 + i * MIN) for k in KINDS for i in range(50)]
    # Short back-off cap and lease for the test: the receiver is retried every ~2 s.
    proc = alerting(MAILLAGE_ALERT_RETRY_BASE_S="0.5", MAILLAGE_ALERT_RETRY_CAP_S="2",
                    MAILLAGE_ALERT_SEND_TIMEOUT_S="1")
    proc.start()
    down_at = time.monotonic()
    produce(services.kafka_bootstrap, opens[:100])
    wait_until(lambda: len(alerts(db_url, al_tenant)) >= 30, 60, "some alerts", proc)
    proc.kill()  # mid-stream: part of the first half applied, offsets maybe not committed
    produce(services.kafka_bootstrap, opens[100:])
    proc.start()
    wait_until(lambda: len(alerts(db_url, al_tenant)) == 200, 60, "200 alerts", proc)
    with psycopg.connect(db_url) as conn:
        expected = {r[0] for r in conn.execute(
            "SELECT o.notification_id FROM notification_outbox o JOIN alerts a ON a.id = o.alert_id "
            "WHERE a.tenant_id = %s", (al_tenant,)).fetchall()}
        tried = conn.execute(
            "SELECT count(*) FROM notification_attempts t JOIN notification_outbox o "
            "ON o.id = t.outbox_id JOIN alerts a ON a.id = o.alert_id WHERE a.tenant_id = %s "
            "AND NOT t.ok", (al_tenant,)).fetchone()
    assert len(expected) == 200 and tried is not None and tried[0] >= 200
    time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))  # down for a minute
    hook.start()
    try:
        wait_until(lambda: len(hook.ids()) >= 20, 30, "the first deliveries", proc)
        proc.kill()  # mid-delivery: what was in flight is sent again after the lease
        proc.start()
        wait_until(lambda: hook.ids() >= expected, 90, "every notification", proc)
        got = hook.received()
        assert hook.ids() == expected
        assert all(h.signature_ok for h in got)
        bodies: dict[str, set[bytes]] = defaultdict(set)
        for h in got:
            bodies[h.notification_id].add(h.body)
        assert all(len(b) == 1 for b in bodies.values())  # a repeat is the same notification
        repeats = len(got) - len(expected)
        print(f"{len(got)} deliveries, {repeats} repeats with the same id")  # noqa: T201
        assert [a["count"] for a in alerts(db_url, al_tenant)] == [1] * 200
    finally:
        hook.stop()
