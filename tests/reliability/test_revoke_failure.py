"""Hole 8: a checkpoint failing in `on_partitions_revoked` does not let later offsets be committed.

aiokafka logs and swallows what a rebalance callback raises. On dc046fb the runner then went on
as if the checkpoint had succeeded: its next batches were written and their offsets committed
(committed 20 after the failure below), including offsets of partitions it had just given up,
past a batch that was never written. That it worked out here is luck: the partition came back
to the same member, which re-read it from the last committed offset; had it moved, a crash of
its new owner would have resumed after the lost batch. Now the loop raises the failure and
commits nothing after it (committed stays empty), and the restarted runner reads it all again.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

from maillage.processors.runner import Runner
from tests.reliability.kafka_helpers import committed, new_topics, produce


class BlockingSink:
    """A batch sink whose first write waits for `release`, then fails (the database went away)."""

    def __init__(self) -> None:
        self.buffer: list[bytes] = []
        self.written: list[bytes] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.failed = False

    def add(self, record) -> None:  # type: ignore[no-untyped-def]
        self.buffer.append(record.value)

    def full(self) -> bool:
        return False

    def flush(self) -> None:
        self.write(self.detach())

    def detach(self) -> list[bytes] | None:
        batch, self.buffer = self.buffer, []
        return batch or None

    def write(self, batch: list[bytes] | None) -> None:
        if not self.failed:
            self.entered.set()
            self.release.wait(60)
            self.failed = True
            raise RuntimeError("connection lost during the rebalance")
        self.written += batch or []


class NullSink:
    """The other member's sink (it consumes another topic of the group)."""

    def add(self, record) -> None:  # type: ignore[no-untyped-def]
        pass

    def full(self) -> bool:
        return False

    def flush(self) -> None:
        pass


def test_failed_checkpoint_at_revocation_stops_without_committing(services) -> None:  # type: ignore[no-untyped-def]
    bootstrap = services.kafka_bootstrap

    async def scenario() -> None:
        topic, elsewhere = await new_topics(bootstrap, 2)
        await produce(bootstrap, topic, [(b"k", f"a{i}".encode()) for i in range(10)])
        group = f"g-{uuid.uuid4().hex[:6]}"
        sink = BlockingSink()
        runner = Runner(bootstrap=bootstrap, topics=[topic], group_id=group, sink=sink, flush_ms=10)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        assert await asyncio.to_thread(sink.entered.wait, 60)  # the first batch is being written
        # A second member joins the group (for another topic, so the runner keeps its partition):
        # the runner's partitions are revoked while that write hangs.
        other = Runner(bootstrap=bootstrap, topics=[elsewhere], group_id=group, sink=NullSink())
        other_stop = asyncio.Event()
        other_task = asyncio.create_task(other.run(other_stop))
        await asyncio.sleep(2)
        sink.release.set()  # the write fails inside on_partitions_revoked
        await produce(bootstrap, topic, [(b"k", f"b{i}".encode()) for i in range(10)])
        for _ in range(200):
            if task.done() or len(sink.written) >= 10:
                break
            await asyncio.sleep(0.1)
        stop.set()
        try:
            await asyncio.wait_for(task, 60)
            error: BaseException | None = None
        except RuntimeError as exc:
            error = exc
        other_stop.set()
        await asyncio.wait_for(other_task, 60)
        # Nothing committed after the failed checkpoint (nothing was before it either).
        assert await committed(bootstrap, group, topic) is None
        assert error is not None and "rebalance" in str(error)

    asyncio.run(scenario())
