"""Rebalances: a second detection process joins mid-stream, then the first leaves. Each takes its
partitions over from the database checkpoint: nothing missed, nothing stored or produced twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg

from maillage.processors.detection.outbox import Relay
from maillage.processors.detection.processor import TOPICS, DetectionSink
from maillage.processors.runner import Runner
from tests.processors.detection.conftest import produce
from tests.processors.detection.meter_stream import (
    READINGS_PER_METER,
    add_meters,
    assert_produced_once,
    assert_stored,
    expected,
    meter_readings,
    rules_engine,
)


def _count(db_url: str, tenant: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM anomaly_outbox WHERE kafka_key LIKE %s "
                           "AND produced_at IS NOT NULL", (f"{tenant}/%",)).fetchone()
    return int(row[0]) if row else 0


def _member(db_url: str, bootstrap: str, group: str) -> tuple[Runner, DetectionSink]:
    sink = DetectionSink(db_url, rules_engine(), group_id=group, checkpoint_s=0.5)
    return Runner(bootstrap=bootstrap, topics=TOPICS, group_id=group, sink=sink), sink


def test_partitions_move_between_processes_without_loss_or_repeat(db_url: str, services: Any,
                                                                   det_tenant: str) -> None:
    tenant, bootstrap = det_tenant, services.kafka_bootstrap
    add_meters(db_url, tenant)
    transitions = expected(tenant)
    group = f"det-{uuid.uuid4().hex[:8]}"
    third = READINGS_PER_METER // 3

    def chunk(c: int) -> list[Any]:
        return meter_readings(tenant, c * third, READINGS_PER_METER if c == 2 else (c + 1) * third)

    async def wait_for(n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(_count, db_url, tenant) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    async def scenario() -> None:
        stop_a, stop_b, stop_relay = asyncio.Event(), asyncio.Event(), asyncio.Event()
        (runner_a, sink_a), (runner_b, sink_b) = (_member(db_url, bootstrap, group),
                                                  _member(db_url, bootstrap, group))
        relay = asyncio.create_task(Relay(db_url, bootstrap, poll_s=0.2).run(stop_relay))
        a = asyncio.create_task(runner_a.run(stop_a))
        try:
            await produce(bootstrap, chunk(0))
            await wait_for(1)
            b = asyncio.create_task(runner_b.run(stop_b))  # joins: partitions are split
            await produce(bootstrap, chunk(1))
            await asyncio.sleep(8)  # the join completes while records flow
            stop_a.set()  # leaves: B takes everything over
            await a
            await produce(bootstrap, chunk(2))
            await wait_for(len(transitions))
            await asyncio.sleep(2)  # anything extra (a repeat) would show now
            stop_b.set()
            await b
            assert sink_a.handled and sink_b.handled  # both worked
        finally:
            stop_a.set()
            stop_b.set()
            stop_relay.set()
            await relay
            sink_a.close()
            sink_b.close()

    asyncio.run(scenario())
    assert_stored(db_url, tenant, transitions)
    assert_produced_once(bootstrap, tenant, transitions)
