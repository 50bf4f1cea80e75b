"""The gateway's outbox: Kafka's default partitions, batches per partition, acks in order."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from maillage.ingest.outbox import KeyPartitioner, Outbox

# Kafka's own murmur2 test vectors (org.apache.kafka.common.utils.UtilsTest), as signed ints.
JAVA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
                b"a-little-bit-longer-string": -1486304829,
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, b"abc": 479470107}


def test_partitions_are_kafkas_default_ones() -> None:
    """Same partition as Java's `toPositive(murmur2(key)) % n` and aiokafka's default partitioner."""
    part = KeyPartitioner(max_keys=50)  # small: the cache is cleared and refilled on the way
    for key, signed in JAVA_MURMUR2.items():
        for n in (1, 3, 8, 12, 100):
            assert part(key, n) == (signed & 0x7FFFFFFF) % n
    rnd = random.Random(3)
    keys = [f"t{rnd.randrange(99)}/dev-{rnd.randrange(10**6)}".encode() for _ in range(2000)]
    for n in (1, 2, 8, 12, 31):
        everything = list(range(n))
        for key in keys:
            assert part(key, n) == DefaultPartitioner()(key, everything, everything)
            assert part(key, n) == part(key, n)  # from the cache


class FakeProducer:
    """What the outbox uses of AIOKafkaProducer; each submitted batch waits for `release`."""

    def __init__(self, partitions: int = 4, batch_bytes: int = 1 << 20) -> None:
        self.partitions = partitions
        self.batch_bytes = batch_bytes
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]], asyncio.Future[Any]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        assert batch.closed()
        records = [(r.key, r.value) for r in DefaultRecordBatch(bytearray(batch._build()))]
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, records, fut))
        return fut

    def release(self, index: int, error: BaseException | None = None) -> None:
        fut = self.sent[index][3]
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


def test_one_batch_per_partition_and_tokens_released_in_order() -> None:
    async def run() -> None:
        producer = FakeProducer(partitions=4)
        acked: list[list[str]] = []
        box: Outbox[str] = Outbox(producer, ["a", "b"], acked.append,  # type: ignore[arg-type]
                                  max_unacked=2)
        await box.start()
        runner = asyncio.create_task(box.run())
        part = KeyPartitioner()
        keys = [f"t/d{i}".encode() for i in range(20)]
        for i, key in enumerate(keys):
            box.add("a", key, b"v%d" % i, 1_700_000_000_000)
            box.add("b", key, b"w%d" % i, 1_700_000_000_000)
            box.note(f"m{i}", 1)
        await _until(lambda: producer.sent)
        first = len(producer.sent)
        # One batch per (topic, partition), each record where Kafka's partitioner puts it.
        assert sorted((t, p) for t, p, _, _ in producer.sent) == sorted(
            {(t, part(k, 4)) for k in keys for t in "ab"})
        for _, p, records, _ in producer.sent:
            assert records and all(part(k, 4) == p for k, _ in records)
            assert [v[1:] for _, v in records] == sorted((v[1:] for _, v in records), key=int)
        # A second generation; neither is acknowledged before all of the first's batches are.
        box.add("a", keys[0], b"late", 1_700_000_000_000)
        box.note("m-late", 1)
        await _until(lambda: len(producer.sent) == first + 1)
        producer.release(first)  # the second generation's batch first: nothing to release yet
        for i in range(first - 1):
            producer.release(i)
        await asyncio.sleep(0.01)
        assert acked == []
        producer.release(first - 1)
        await _until(lambda: len(acked) == 2)
        assert acked == [[f"m{i}" for i in range(20)], ["m-late"]]
        runner.cancel()

    asyncio.run(run())


def test_at_most_max_unacked_generations_at_kafka() -> None:
    async def run() -> None:
        producer = FakeProducer(partitions=1)
        acked: list[list[int]] = []
        box: Outbox[int] = Outbox(producer, ["a"], acked.append,  # type: ignore[arg-type]
                                  max_unacked=2)
        await box.start()
        runner = asyncio.create_task(box.run())
        for gen in range(3):
            for i in range(3):
                box.add("a", b"k", b"%d" % (gen * 3 + i), 0)
                box.note(gen * 3 + i, 1)
            await asyncio.sleep(0.01)
        assert len(producer.sent) == 2  # the third generation waits for a free slot
        assert box.pending == 3
        producer.release(0)
        await _until(lambda: len(producer.sent) == 3)
        producer.release(1)
        producer.release(2)
        await _until(lambda: box.pending == 0)
        assert acked == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
        runner.cancel()

    asyncio.run(run())


def test_full_batch_continues_in_another_one_for_the_same_partition() -> None:
    async def run() -> None:
        producer = FakeProducer(partitions=1, batch_bytes=300)
        acked: list[list[int]] = []
        box: Outbox[int] = Outbox(producer, ["a"], acked.append)  # type: ignore[arg-type]
        await box.start()
        runner = asyncio.create_task(box.run())
        for i in range(10):
            box.add("a", b"k", b"x" * 60 + b"%d" % i, 0)
        box.note(1, 10)
        await _until(lambda: len(producer.sent) >= 2 and sum(len(r) for _, _, r, _ in producer.sent) == 10)
        values = [v for _, _, records, _ in producer.sent for _, v in records]
        assert values == [b"x" * 60 + b"%d" % i for i in range(10)]
        for i in range(len(producer.sent)):
            producer.release(i)
        await _until(lambda: acked == [[1]])
        runner.cancel()

    asyncio.run(run())


def test_kafka_failure_stops_the_outbox_and_releases_nothing_more() -> None:
    async def run() -> None:
        producer = FakeProducer(partitions=1)
        acked: list[list[int]] = []
        box: Outbox[int] = Outbox(producer, ["a"], acked.append)  # type: ignore[arg-type]
        await box.start()
        runner = asyncio.create_task(box.run())
        box.add("a", b"k", b"v", 0)
        box.note(1, 1)
        await _until(lambda: producer.sent)
        producer.release(0, RuntimeError("broker gone"))
        with pytest.raises(RuntimeError, match="broker gone"):
            await asyncio.wait_for(runner, 5)
        assert acked == []

    asyncio.run(run())


def test_drain_waits_for_the_acks() -> None:
    async def run() -> None:
        producer = FakeProducer(partitions=2)
        acked: list[list[int]] = []
        box: Outbox[int] = Outbox(producer, ["a"], acked.append)  # type: ignore[arg-type]
        await box.start()
        runner = asyncio.create_task(box.run())
        box.add("a", b"k1", b"v", 0)
        box.note(7, 1)
        box.note(8, 1)  # a message that made no record (nothing to produce, still acknowledged)
        drained = asyncio.create_task(box.drain(5))
        await _until(lambda: producer.sent)
        assert not drained.done()
        producer.release(0)
        assert await drained
        assert acked == [[7, 8]]
        runner.cancel()

    asyncio.run(run())
