"""The runner commits offsets only after its sink flushed: checked after success and after a crash."""

from __future__ import annotations

import asyncio
import threading
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from maillage.processors.kafka_topics import group_lag
from maillage.processors.runner import Runner
from tests.reliability.kafka_helpers import committed


class ListSink:
    """Collects record values; fails on flush when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.buffer: list[bytes] = []
        self.flushed: list[bytes] = []
        self.fail = fail

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        assert record.value is not None
        self.buffer.append(record.value)

    def full(self) -> bool:
        return len(self.buffer) >= 1000

    def flush(self) -> None:
        if self.fail:
            raise RuntimeError("database down")
        self.flushed += self.buffer
        self.buffer.clear()


async def _setup(bootstrap: str, n: int) -> str:
    topic = f"test-runner-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for i in range(n):
        await producer.send(topic, f"r{i}".encode())
    await producer.flush()
    await producer.stop()
    return topic


async def _run_until(runner: Runner, sink: ListSink, n: int) -> BaseException | None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    for _ in range(1200):
        await asyncio.sleep(0.05)
        if len(sink.flushed) >= n or task.done():
            break
    stop.set()
    try:
        await asyncio.wait_for(task, 30)
    except Exception as exc:  # noqa: BLE001 - the crash case returns it
        return exc
    return None


def test_offsets_committed_after_flush(services) -> None:  # type: ignore[no-untyped-def]
    """Success: every record flushed once, committed offset = number of records."""

    async def scenario() -> None:
        topic = await _setup(services.kafka_bootstrap, 50)
        group = f"g-{uuid.uuid4().hex[:6]}"
        assert await group_lag(services.kafka_bootstrap, group, [topic]) == 50  # nothing committed
        sink = ListSink()
        err = await _run_until(Runner(bootstrap=services.kafka_bootstrap, topics=[topic], group_id=group,
                                      sink=sink, flush_ms=100), sink, 50)
        assert err is None
        assert sink.flushed == [f"r{i}".encode() for i in range(50)]
        assert await committed(services.kafka_bootstrap, group, topic) == 50
        assert await group_lag(services.kafka_bootstrap, group, [topic]) == 0

    asyncio.run(scenario())


def test_no_commit_when_the_sink_fails(services) -> None:  # type: ignore[no-untyped-def]
    """Crash: the flush fails, the runner stops with the error, nothing is committed, a restart
    with a healthy sink gets every record again."""

    async def scenario() -> None:
        topic = await _setup(services.kafka_bootstrap, 20)
        group = f"g-{uuid.uuid4().hex[:6]}"
        failing = ListSink(fail=True)
        err = await _run_until(Runner(bootstrap=services.kafka_bootstrap, topics=[topic], group_id=group,
                                      sink=failing, flush_ms=100), failing, 20)
        assert isinstance(err, RuntimeError)
        assert await committed(services.kafka_bootstrap, group, topic) is None
        healthy = ListSink()
        err = await _run_until(Runner(bootstrap=services.kafka_bootstrap, topics=[topic], group_id=group,
                                      sink=healthy, flush_ms=100), healthy, 20)
        assert err is None
        assert healthy.flushed == [f"r{i}".encode() for i in range(20)]

    asyncio.run(scenario())


class BatchListSink(ListSink):
    """A sink with detach/write: its batches are written while the runner fetches on."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.batches: list[list[bytes]] = []
        self.committed_after: list[int] = []

    def full(self) -> bool:
        return len(self.buffer) >= 7

    def detach(self) -> list[bytes] | None:
        batch, self.buffer = self.buffer, []
        return batch or None

    def write(self, batch: list[bytes]) -> None:
        if self.fail_at is not None and len(self.flushed) + len(batch) > self.fail_at:
            raise RuntimeError("database down")
        self.batches.append(batch)
        self.flushed += batch


def test_overlapped_writes_commit_in_order_after_their_batch(services) -> None:  # type: ignore[no-untyped-def]
    """Batches written in the background: all in order, each once; the committed offset covers all."""

    async def scenario() -> None:
        topic = await _setup(services.kafka_bootstrap, 60)
        group = f"g-{uuid.uuid4().hex[:6]}"
        sink = BatchListSink()
        runner = Runner(bootstrap=services.kafka_bootstrap, topics=[topic], group_id=group,
                        sink=sink, flush_ms=100, max_records=5)
        err = await _run_until(runner, sink, 60)
        assert err is None
        assert sink.flushed == [f"r{i}".encode() for i in range(60)]
        assert len(sink.batches) > 1
        assert await committed(services.kafka_bootstrap, group, topic) == 60

    asyncio.run(scenario())


def test_overlapped_write_failure_commits_nothing_past_it(services) -> None:  # type: ignore[no-untyped-def]
    """A background write fails: the runner stops, offsets stay at the last written batch."""

    async def scenario() -> None:
        topic = await _setup(services.kafka_bootstrap, 40)
        group = f"g-{uuid.uuid4().hex[:6]}"
        failing = BatchListSink(fail_at=20)
        err = await _run_until(Runner(bootstrap=services.kafka_bootstrap, topics=[topic], group_id=group,
                                      sink=failing, flush_ms=100, max_records=5), failing, 40)
        assert isinstance(err, RuntimeError)
        done = await committed(services.kafka_bootstrap, group, topic)
        assert done is not None and done <= len(failing.flushed) <= 20
        healthy = BatchListSink()
        err = await _run_until(Runner(bootstrap=services.kafka_bootstrap, topics=[topic], group_id=group,
                                      sink=healthy, flush_ms=100), healthy, 40 - done)
        assert err is None
        assert failing.flushed[:done] + healthy.flushed == [f"r{i}".encode() for i in range(40)]

    asyncio.run(scenario())


class GatedSink(BatchListSink):
    """Each write waits for `gate`; records whether two writes ever overlapped."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.writing = False
        self.overlapped = False

    def full(self) -> bool:
        return len(self.buffer) >= 1000

    def write(self, batch: list[bytes]) -> None:
        self.overlapped = self.overlapped or self.writing
        self.writing = True
        self.gate.wait(30)
        self.gate.clear()
        self.writing = False
        super().write(batch)


def test_batches_hold_what_arrived_during_the_previous_write(services) -> None:  # type: ignore[no-untyped-def]
    """Load-sized batches: a lone record goes alone; what arrives while it is written goes next, together."""

    async def scenario() -> None:
        topic = await _setup(services.kafka_bootstrap, 1)
        sink = GatedSink()
        runner = Runner(bootstrap=services.kafka_bootstrap, topics=[topic], group_id=f"g-{uuid.uuid4().hex[:6]}",
                        sink=sink, flush_ms=20)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        for _ in range(600):  # the first write has started
            if sink.writing:
                break
            await asyncio.sleep(0.05)
        assert sink.writing
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap)
        await producer.start()
        for i in range(1, 10):
            await producer.send_and_wait(topic, f"r{i}".encode())
        await producer.stop()
        for _ in range(600):  # fetched meanwhile, held back while the writer is busy
            if len(sink.buffer) == 9:
                break
            await asyncio.sleep(0.05)
        assert len(sink.buffer) == 9 and sink.batches == []
        sink.gate.set()  # the first write returns: the nine go as one batch
        for _ in range(600):
            if sink.writing:
                break
            await asyncio.sleep(0.05)
        sink.gate.set()
        for _ in range(600):
            if len(sink.flushed) == 10:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 30)
        assert sink.batches == [[b"r0"], [f"r{i}".encode() for i in range(1, 10)]]
        assert not sink.overlapped

    asyncio.run(scenario())


def test_commits_are_spaced_and_everything_stored_is_committed_at_stop(services) -> None:  # type: ignore[no-untyped-def]
    """Offsets of written batches wait for `commit_ms` (one commit for many batches), never run
    ahead of the writes, and are all committed when the runner stops."""

    async def scenario() -> None:
        topic = await _setup(services.kafka_bootstrap, 60)
        group = f"g-{uuid.uuid4().hex[:6]}"
        sink = BatchListSink()
        runner = Runner(bootstrap=services.kafka_bootstrap, topics=[topic], group_id=group,
                        sink=sink, flush_ms=20, max_records=5, commit_ms=3_600_000)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        for _ in range(1200):
            await asyncio.sleep(0.05)
            if len(sink.flushed) >= 60 or task.done():
                break
        assert len(sink.batches) > 1
        # The first batch was committed at once (no commit yet in this run), the rest waits.
        assert await committed(services.kafka_bootstrap, group, topic) == len(sink.batches[0])
        stop.set()
        await asyncio.wait_for(task, 30)
        assert sink.flushed == [f"r{i}".encode() for i in range(60)]
        assert await committed(services.kafka_bootstrap, group, topic) == 60

    asyncio.run(scenario())
