"""Falls over MQTT on the real stack (`maillage up`) reach the anomalies table and topic within 1 s."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer

from maillage import topics
from tests.e2e.conftest import Publisher, Stack, wait_until

log = logging.getLogger(__name__)


class TopicWatch:
    """Reads `maillage.anomalies` from its end in a thread; notes when each event id arrived."""

    def __init__(self, bootstrap: str, tenant: str) -> None:
        self.bootstrap, self.tenant = bootstrap, tenant
        self.seen: dict[str, tuple[float, dict[str, Any]]] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self.ready.wait(60), "could not read maillage.anomalies"

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(topics.ANOMALIES, bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="latest", fetch_max_wait_ms=10)
        await consumer.start()
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.05)
            for tp in consumer.assignment():
                await consumer.position(tp)  # resolve "latest" before anything is published
            self.ready.set()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=50)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        d = orjson.loads(r.value or b"{}")
                        if d.get("tenant") == self.tenant:
                            self.seen[d["event_id"]] = (now, d)
        finally:
            await consumer.stop()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _fall_row(db: str, tenant: str, device_id: str, start: datetime) -> bool:
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT 1 FROM anomalies WHERE tenant_id = %s AND device_id = %s "
                            "AND kind = 'fall' AND start_ts = %s", (tenant, device_id, start)).fetchone() is not None


def test_fall_over_mqtt_reaches_table_and_topic_within_a_second(stack: Stack) -> None:
    """After a warm-up fall (the processor may still be joining its group), three falls are each
    stored and produced to `maillage.anomalies` within 1 s of their publication."""
    tenant = stack.tenant()
    pendant = stack.device(tenant, "care_button")
    watch = TopicWatch(str(stack.status["kafka_bootstrap"]), tenant)
    pub = Publisher(stack, pendant)
    delays: list[tuple[float, float]] = []
    try:
        for i in range(4):
            ts = datetime.now(UTC).replace(microsecond=0)
            if delays or i:
                time.sleep(1.1)  # distinct measurement seconds
                ts = datetime.now(UTC).replace(microsecond=0)
            payload = orjson.dumps({"ts": ts.isoformat().replace("+00:00", "Z"), "event": "fall_detected"})
            sent = time.time()
            assert not pub.publish("up/event", payload).is_failure
            row_at = None
            limit = 90 if i == 0 else 5
            deadline = sent + limit
            while time.time() < deadline:
                if row_at is None and _fall_row(stack.db(), tenant, pendant.device_id, ts):
                    row_at = time.time()
                topic_at = next((t for t, d in watch.seen.values()
                                 if d["kind"] == "fall" and d["start"] == int(ts.timestamp() * 1e6)), None)
                if row_at is not None and topic_at is not None:
                    break
                time.sleep(0.01)
            assert row_at is not None and topic_at is not None, f"fall {i} not stored and produced"
            if i:
                delays.append((row_at - sent, topic_at - sent))
    finally:
        pub.close()
        watch.close()
    log.info("fall -> (row, topic) delays, s: %s", [(round(r, 3), round(t, 3)) for r, t in delays])
    assert all(row < 1.0 and topic < 1.0 for row, topic in delays), delays
    assert wait_until(lambda: len([d for _, d in watch.seen.values() if d["kind"] == "fall"]) == 4, 5)
    with psycopg.connect(stack.db()) as conn:
        rows = conn.execute("SELECT severity, care, end_ts FROM anomalies WHERE tenant_id = %s",
                            (tenant,)).fetchall()
    assert rows == [("critical", True, None)] * 4
