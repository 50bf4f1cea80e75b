"""Hole 3: poison records and a database outage do not crash-loop the storage processor.

On dc046fb the runner called `sink.add` and `sink.write` bare: the undecodable record raised
out of `Runner.run` at once (the processor exits, restarts, reads the same record, exits again),
and so did the first write while the database was unreachable. Here the runner goes on: the
good readings are stored, each poison record is on the dead-letter topic with the stage and the
error, and the committed offset covers every record.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from maillage.envelope import DlqRecord, to_us
from maillage.processors.runner import Runner
from maillage.processors.storage import StorageSink
from maillage.stack.process import free_port
from tests.reliability.kafka_helpers import committed, new_topics, produce, read_all

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _reading(tenant: str, device: str, ts: datetime, values: dict[str, float]) -> bytes:
    return orjson.dumps({"tenant": tenant, "device_id": device, "kind": "reading", "ts": to_us(ts),
                         "rx": to_us(ts + timedelta(seconds=1)), "fmt": "json", "values": values})


def test_poison_records_are_dead_lettered_and_an_outage_waited_out(services, db_url: str,  # type: ignore[no-untyped-def]
                                                                  tenant: str) -> None:
    bootstrap = services.kafka_bootstrap
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (tenant_id, device_id, type, mqtt_username) "
                     "VALUES (%s, 'm1', 'meter', %s)", (tenant, f"{tenant}-m1"))

    async def scenario() -> None:
        source, dlq = await new_topics(bootstrap, 2)
        key = f"{tenant}/m1".encode()
        event = orjson.dumps({"tenant": tenant, "device_id": "m1", "kind": "event",
                              "ts": to_us(T0), "rx": to_us(T0), "fmt": "event",
                              "event": "tamper", "attrs": {"note": "bad\u0000text"}})
        await produce(bootstrap, source, [
            (key, _reading(tenant, "m1", T0, {"voltage_v": 230.0})),
            (key, b"\xff not json"),  # will not decode
            (key, _reading(tenant, "m1", T0 + timedelta(minutes=1), {"bad\u0000name": 1.0})),
            (key, event),  # jsonb refuses \u0000: a DataError on every write
            (key, _reading(tenant, "m1", T0 + timedelta(minutes=2), {"voltage_v": 231.0})),
        ])
        # The database is unreachable when the processor starts, and comes back 3 s later.
        sink = StorageSink(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
        sink.dead_letter_topic = dlq
        group = f"g-{uuid.uuid4().hex[:6]}"
        runner = Runner(bootstrap=bootstrap, topics=[source], group_id=group, sink=sink, flush_ms=50)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await asyncio.sleep(3)
        assert not task.done(), task.exception()  # waiting, not exiting
        sink.database_url = db_url
        try:
            for _ in range(600):
                await asyncio.sleep(0.1)
                assert not task.done(), task.exception()
                if await committed(bootstrap, group, source) == 5:
                    break
            assert await committed(bootstrap, group, source) == 5
            assert runner.dead_lettered == 3
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
            sink.close()
        dead = [DlqRecord.from_kafka(v) for v in await read_all(bootstrap, dlq, 3)]
        assert sorted(d.detail.split(" ")[0] for d in dead) == [
            "storage:decode", "storage:write", "storage:write"]
        assert {d.reason for d in dead} == {"not_stored"}
        assert {(d.tenant, d.device_id) for d in dead} == {(tenant, "m1")}
        assert b"\xff not json" in [d.payload for d in dead]
        errors = " ".join(d.detail for d in dead)  # each names its error
        assert all(e in errors for e in ("JSONDecodeError", "invalid metric names",
                                         "UntranslatableCharacter"))

    asyncio.run(scenario())
    with psycopg.connect(db_url) as conn:
        values = conn.execute(
            "SELECT r.value FROM readings r JOIN devices d ON d.pk = r.device_pk "
            "WHERE d.tenant_id = %s ORDER BY r.ts", (tenant,)).fetchall()
    assert values == [(230.0,), (231.0,)]
