"""The detection processor on the real Kafka and PostgreSQL: rows, outbox, topic, checkpoints."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg

from maillage import topics
from maillage.envelope import DlqRecord, from_us
from maillage.processors.detection.engine import Engine, load_tables
from maillage.processors.detection.outbox import Relay
from maillage.processors.detection.processor import TOPICS, DetectionSink
from maillage.processors.runner import Runner
from tests.processors.detection.conftest import (
    MIN,
    T0,
    anomaly_rows,
    fall,
    produce_sync,
    read_anomalies,
    reading,
)


def _engine() -> Engine:
    t = load_tables(["tests.processors.detection.rules_fixture"])
    return Engine(t.rules, t.group_rules, quality=t.quality, on_rejected=t.on_rejected, online=False)


async def _run(db_url: str, bootstrap: str, group: str, until: Any, timeout: float = 60) -> DetectionSink:
    sink = DetectionSink(db_url, _engine(), group_id=group, checkpoint_s=0.5)
    runner = Runner(bootstrap=bootstrap, topics=TOPICS, group_id=group, sink=sink)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(runner.run(stop)),
             asyncio.create_task(Relay(db_url, bootstrap, poll_s=0.2).run(stop))]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not any(t.done() for t in tasks):
            if await asyncio.to_thread(until, sink):
                break
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        sink.close()
    return sink


def _pending(db_url: str, tenant: str) -> int:
    """The tenant's anomaly transitions stored but not yet produced to Kafka."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM anomaly_outbox WHERE produced_at IS NULL "
                           "AND kafka_key LIKE %s", (f"{tenant}/%",)).fetchone()
    return int(row[0]) if row else 0


def _open_power(rows: list[tuple[Any, ...]]) -> bool:
    """Whether an over-subscribed-power anomaly is still open (its close not yet processed)."""
    return any(r[2] == "over_subscribed_power" and r[4] for r in rows)


def test_records_become_rows_outbox_topic_and_checkpoint(db_url: str, services: Any,
                                                         det_tenant: str) -> None:
    """Anomalies are stored once and produced once; states and offsets are checkpointed; bad
    records are skipped; a second run resumes from the checkpoint without raising anything again."""
    tenant, bootstrap = det_tenant, services.kafka_bootstrap
    powers = [100, 1500, 1500, 1500, 100, 100]
    produce_sync(bootstrap, [
        (topics.READINGS, f"{tenant}/m1".encode(), b"not json"),  # poison
        reading(tenant, "ghost", T0, active_power_w=5000),  # not registered
        *[reading(tenant, "m1", T0 + i * MIN, active_power_w=p) for i, p in enumerate(powers)],
        fall(tenant, "h1", T0 + 3 * MIN),
        *[reading(tenant, f"l{i}", T0 + i * MIN, lamp_power_w=0) for i in range(3)],
        (topics.DLQ, f"{tenant}/c1".encode(), DlqRecord(
            mqtt_topic=f"maillage/{tenant}/c1/up/json", tenant=tenant, device_id="c1",
            received_at=from_us(T0), reason="bad_json", detail="x", payload=b"{").to_kafka()),
    ])
    group = f"det-{uuid.uuid4().hex[:8]}"

    def done(sink: DetectionSink) -> bool:
        rows = anomaly_rows(db_url, tenant)
        return (len(rows) >= 4 and sink.poison >= 1 and not _open_power(rows)
                and _pending(db_url, tenant) == 0)

    sink = asyncio.run(_run(db_url, bootstrap, group, done))
    rows = anomaly_rows(db_url, tenant)
    kinds = {(r[1], r[2]): r for r in rows}
    assert set(kinds) == {("m1", "over_subscribed_power"), ("h1", "fall"), ("c1", "lamp_failure"),
                          ("c1", "malformed_payload")}
    assert kinds[("m1", "over_subscribed_power")][4] is False  # closed
    assert kinds[("h1", "fall")][3:7] == ("critical", True, None, True)  # open, care
    assert kinds[("c1", "lamp_failure")][5:7] == ("cabinet:c1", False)
    assert sink.poison == 1 and sink.unknown >= 1
    with psycopg.connect(db_url) as conn:
        st = conn.execute("SELECT state->'m'->'rules_fixture.high_power'->>'n', last_ts, interval_s "
                          "FROM detection_state WHERE tenant_id = %s AND device_id = 'm1'",
                          (tenant,)).fetchone()
        offsets = conn.execute("SELECT count(*) FROM detection_offsets WHERE consumer_group = %s",
                               (group,)).fetchone()
    assert st is not None and st[0] == "6" and st[2] == 60.0
    assert offsets is not None and offsets[0] >= 2  # readings and events partitions at least
    assert _pending(db_url, tenant) == 0
    produced = asyncio.run(read_anomalies(bootstrap, tenant))
    assert sorted((d["device_id"], d["kind"], d["change"]) for d in produced) == [
        ("c1", "lamp_failure", "open"), ("c1", "malformed_payload", "open"), ("h1", "fall", "open"),
        ("m1", "over_subscribed_power", "close"), ("m1", "over_subscribed_power", "open")]

    # A second run, same group: resumes at the checkpoint (no transition again) with the state.
    produce_sync(bootstrap, [reading(tenant, "m1", T0 + (6 + i) * MIN, active_power_w=p)
                             for i, p in enumerate([100, 1600, 100])])

    def reopened(sink: DetectionSink) -> bool:
        rows = anomaly_rows(db_url, tenant)
        return len(rows) >= 5 and not _open_power(rows) and _pending(db_url, tenant) == 0

    asyncio.run(_run(db_url, bootstrap, group, reopened))
    rows = anomaly_rows(db_url, tenant)
    assert [(r[1], r[2]) for r in rows].count(("m1", "over_subscribed_power")) == 2
    produced = asyncio.run(read_anomalies(bootstrap, tenant))
    assert len(produced) == 7 and len({d["event_id"] for d in produced}) == 7
    with psycopg.connect(db_url) as conn:
        n = conn.execute("SELECT state->'m'->'rules_fixture.high_power'->>'n' FROM detection_state "
                         "WHERE tenant_id = %s AND device_id = 'm1'", (tenant,)).fetchone()
    assert n == ("9",)
