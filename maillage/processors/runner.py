"""One consumer loop for every processor: poll, `add()` each record to the sink, checkpoint.

Checkpoint order (at most every `flush_ms`, or when the sink says it is full, or before a
rebalance takes partitions away): 1. `sink.flush()` commits the batch to its target (the database
transaction), 2. the consumer commits the offsets of every record added. A crash between 1 and 2
replays the batch, which the sinks absorb idempotently; a failure in 1 stops the runner without
committing offsets, so nothing is lost. The database work runs in a worker thread so that the
consumer's heartbeats go on while PostgreSQL is slow (back-pressure instead of a group eviction).

A sink that can `detach()` its buffers (`BatchSink`) has its batch written while the runner
fetches and decodes the next one: at most one batch is in flight, batches are written in order,
and the offsets of a batch are committed only after its own write returned. Its batches are
sized by the load, not by a timer: what arrived while the previous write ran is handed over as
soon as that write returns (at most every `flush_ms`, sooner when the sink is full). A light
load gets small batches and a low latency; under a heavy one each write takes longer, more
arrives meanwhile, and batches grow up to the sink's limit, where the fixed cost per batch fades.

Offsets of written batches are committed at most every `commit_ms` (and always before a
rebalance and when the runner stops): each commit is a write to Kafka's `__consumer_offsets`, and
at a light load, with a batch every few tens of milliseconds per consumer group, committing each
one cost the broker more than the records themselves. A crash replays at most `commit_ms` more
records, which the sinks absorb as they absorb any replay. A fetch waits at the broker at most
`fetch_wait_ms` for a first record (`stack.state.kafka_fetch_wait_ms`: a long poll on Apache
Kafka, which answers as soon as one arrives; short on Tansu, which answers when the wait ends).

A sink that checkpoints its own offsets with its state (`SeekingSink`, the detection processor)
says where each assigned partition resumes and is told before partitions go; for it Kafka's
committed offsets are a lag figure only. Other sinks are unaffected.

A sink that dead-letters (`poison.DeadLetterSink`, the storage sink) never stops the runner on a
record: one that will not decode or can never be written goes to its dead-letter topic with the
stage and the error, and writes failing for a transient reason (the database is down) are
retried (`poison.py`); offsets are committed once each record is stored or dead-lettered.

aiokafka swallows an exception raised in a rebalance callback: a checkpoint failing in
`on_partitions_revoked` is kept and raised by the loop, which stops without committing anything
after it (the revoked partitions' offsets included), so the failed batch is consumed again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol, runtime_checkable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from maillage.processors.poison import DeadLetterSink, dead_letter_record, write_or_dead_letter

log = logging.getLogger(__name__)

_WAITING_POLL_MS = 5
_IDLE_POLL_MS = 200
COMMIT_MS = 1_000
_IDLE_S = 1.0  # a SeekingSink's `idle` hook runs at most this often
_REVOKE_RETRY_S = 60.0
_STOP_TIMEOUT_S = 30.0  # a rebalance waits this long at most for a database that is down


class Sink(Protocol):
    """What a processor gives the runner."""

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Take one record (topic, partition, offset, key, value)."""

    def full(self) -> bool:
        """True when the sink wants a checkpoint now."""

    def flush(self) -> None:
        """Commit everything added so far to the target; raise to stop the runner."""


@runtime_checkable
class BatchSink(Sink, Protocol):
    """A sink whose buffered records can be handed over and written apart from new ones."""

    def detach(self) -> Any:
        """Take what was added so far as one batch (called on the event loop); None if empty."""

    def write(self, batch: Any) -> None:
        """Commit a detached batch to the target (called in a worker thread); raise to stop."""


@runtime_checkable
class SeekingSink(Sink, Protocol):
    """A sink that keeps its own offsets with its state (optional hooks, called in a worker thread).

    `assigned` returns where to resume each assigned partition (None: from its start); Kafka's
    committed offsets are then only a lag figure. `revoked` runs after the checkpoint that precedes
    a rebalance and when the runner stops, so the sink can checkpoint what it keeps apart.
    """

    def assigned(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Offsets to seek to on assignment."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions are about to go (or the runner stops)."""

    def idle(self, partitions: list[TopicPartition]) -> None:
        """Nothing arrived for a while: a chance to checkpoint what is kept apart."""


class _Checkpointer(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships it untyped
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if not revoked:
            return
        runner = self.runner
        runner._revoking = True
        try:
            await runner.checkpoint()
            await runner.sink_hook("revoked", list(revoked))
        except Exception as exc:  # noqa: BLE001 - re-raised by the consume loop
            # aiokafka would log and swallow this, then let later checkpoints commit offsets
            # past the failed batch: keep it for the loop to raise, and commit nothing more.
            log.error("%s: checkpoint before a rebalance failed: %s", runner.group_id, exc)
            runner._failed = exc
        finally:
            runner._revoking = False

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("%s assigned %s", self.runner.group_id,
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)))
        if not isinstance(self.runner.sink, SeekingSink):
            return
        # Records fetched before the seek are dropped (they come again from the sought offsets).
        # A failure stops the runner: consuming from Kafka's offsets would skip past the state.
        self.runner._seeking = True
        try:
            try:
                seek = await self.runner.sink_hook("assigned", list(assigned))
            except Exception as exc:  # noqa: BLE001 - re-raised by the consume loop
                self.runner._failed = exc
                return
            consumer = self.runner._consumer
            assert consumer is not None
            # No await between the seeks and the end of `_seeking`: a record fetched from a
            # sought offset must not be dropped. Offset 0 below the log start resets to earliest.
            for tp, offset in seek.items():
                consumer.seek(tp, offset or 0)
        finally:
            self.runner._seeking = False
            log.info("%s resumes from its own checkpoint: %s", self.runner.group_id,
                     ", ".join(f"{tp.topic}[{tp.partition}]@{'start' if o is None else o}"
                               for tp, o in sorted(seek.items())))


class Runner:
    """Consumes `topics` in consumer group `group_id` into `sink`."""

    def __init__(self, *, bootstrap: str, topics: list[str], group_id: str, sink: Sink,
                 flush_ms: int = 20, max_records: int = 20_000, client_id: str | None = None,
                 commit_ms: int = COMMIT_MS, fetch_wait_ms: int = 50) -> None:
        self.bootstrap, self.topics, self.group_id, self.sink = bootstrap, topics, group_id, sink
        self.flush_ms, self.max_records = flush_ms, max_records
        self.commit_ms, self.fetch_wait_ms = commit_ms, fetch_wait_ms
        self._written: dict[TopicPartition, int] = {}  # stored, offsets not committed yet
        self._last_commit = float("-inf")  # the first batch is committed at once
        self._commit_lock = asyncio.Lock()
        self.client_id = client_id or group_id
        self._consumer: AIOKafkaConsumer | None = None
        self._uncommitted: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._in_flight: asyncio.Task[None] | None = None
        self._seeking = False  # a SeekingSink's assignment hook is running
        self._failed: BaseException | None = None  # raised in a rebalance callback
        self._revoking = False
        self._stop: asyncio.Event | None = None
        self._dead = sink if isinstance(sink, DeadLetterSink) else None
        self._raw: list[list[ConsumerRecord[bytes, bytes]]] = []  # added since the last detach
        self._producer: AIOKafkaProducer | None = None
        self.records = 0
        self.dead_lettered = 0

    def _due(self, elapsed_ms: float) -> bool:
        """Whether to hand the buffered records over now."""
        if self.sink.full():
            return True
        if not self._uncommitted or elapsed_ms < self.flush_ms:
            return False
        if isinstance(self.sink, BatchSink):  # only once the writer is free
            return self._in_flight is None or self._in_flight.done()
        return True

    async def checkpoint(self, *, commit: bool = True) -> None:
        """Flush the sink, then commit the offsets of everything stored (nothing left in flight);
        with `commit=False` only when `commit_ms` passed since the last commit."""
        async with self._lock:
            await self._settle()
            if not self._uncommitted and not self._written:
                return
            if self._failed is not None:  # never commit past a batch that failed
                raise self._failed
            if self._uncommitted:
                if self._dead is not None:
                    raw, self._raw = self._raw, []
                    await self._write_dead_lettering(self._dead.detach(), raw)
                else:
                    await asyncio.to_thread(self.sink.flush)
                self._written.update(self._uncommitted)
                self._uncommitted.clear()
            if commit or self._commit_due():
                await self._commit_written()

    async def sink_hook(self, name: str, partitions: list[TopicPartition]) -> Any:
        """Call the sink's optional `assigned` / `revoked` hook with nothing in flight."""
        if not isinstance(self.sink, SeekingSink):
            return None
        async with self._lock:
            await self._settle()
            return await asyncio.to_thread(getattr(self.sink, name), partitions)

    async def _rotate(self) -> None:
        """Hand the buffered batch to a background write; wait for the previous one first."""
        if not isinstance(self.sink, BatchSink):
            await self.checkpoint(commit=False)
            return
        async with self._lock:
            await self._settle()
            if not self._uncommitted:
                return
            offsets = dict(self._uncommitted)
            self._uncommitted.clear()
            batch = self.sink.detach()
            raw, self._raw = self._raw, []
            self._in_flight = asyncio.create_task(self._write(batch, offsets, raw))

    async def _write(self, batch: Any, offsets: dict[TopicPartition, int],
                     raw: list[list[ConsumerRecord[bytes, bytes]]]) -> None:
        assert isinstance(self.sink, BatchSink)
        if self._dead is not None:
            await self._write_dead_lettering(batch, raw)
        elif batch is not None:
            await asyncio.to_thread(self.sink.write, batch)
        self._written.update(offsets)
        if self._commit_due():
            await self._commit_written()

    def _commit_due(self) -> bool:
        return (time.monotonic() - self._last_commit) * 1000 >= self.commit_ms

    async def _write_dead_lettering(self, batch: Any,
                                    raw: list[list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Write a batch; retry transient failures, dead-letter the records no write accepts."""
        assert self._dead is not None
        records = [rec for part in raw for rec in part]
        self.dead_lettered += await write_or_dead_letter(
            self._dead, batch, records, dead_letter=self._dead_letter, give_up=self._give_up)

    def _give_up(self, failing_s: float) -> bool:
        """Stop retrying a transient failure: the runner is stopping, or a rebalance waits."""
        stopping = self._stop is not None and self._stop.is_set()
        return stopping or (self._revoking and failing_s > _REVOKE_RETRY_S)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], stage: str,
                           exc: BaseException) -> None:
        """Produce the DLQ record of `record` and wait for Kafka's acknowledgement."""
        assert self._dead is not None and self._producer is not None
        if record.topic == self._dead.dead_letter_topic and b'"not_stored"' in (record.value or b""):
            # A dead-letter record that cannot be stored itself: dead-lettering it again would loop.
            log.error("%s: dropping undeliverable dead-letter record %s[%d]@%d: %s", self.group_id,
                      record.topic, record.partition, record.offset, exc)
            return
        dlq = dead_letter_record(record, stage, exc)
        await self._producer.send_and_wait(self._dead.dead_letter_topic, dlq.to_kafka(), key=dlq.key)

    async def _settle(self) -> None:
        """Wait for the batch in flight; its failure is raised here (its offsets stay uncommitted)."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await task

    async def _commit_written(self) -> None:
        """Commit the offsets of the records stored so far, in order (one commit at a time).

        A commit the group refuses (it rebalanced, or its coordinator failed over) is no error:
        the records are stored, and whoever owns the partitions now replays them from the last
        committed offset, which the sinks absorb."""
        assert self._consumer is not None
        async with self._commit_lock:
            last, self._written = self._written, {}
            self._last_commit = time.monotonic()
            if not last:
                return
            try:
                await self._consumer.commit({tp: OffsetAndMetadata(off + 1, "")
                                             for tp, off in last.items()})
            except CommitFailedError as exc:
                log.warning("%s: offset commit refused (%s); the partitions' next owner replays "
                            "from the last committed offset", self.group_id, exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the last checkpoint runs before returning."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group_id, client_id=self.client_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=self.max_records, fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_wait_ms=self.fetch_wait_ms,  # see the module docstring
            # Tansu completes a group join after about half the session timeout: keep it short.
            session_timeout_ms=6_000,
            heartbeat_interval_ms=1_000, max_poll_interval_ms=600_000,
            # aiokafka does not refresh metadata when a partition's offset lookup hits a former
            # leader (NotLeaderForPartition, after a broker failover): it retries the same broker
            # until the next periodic refresh, 5 minutes by default. Keep the stall short.
            metadata_max_age_ms=10_000,
            # aiokafka has no cooperative rebalancing; the sticky assignor keeps each member's
            # partitions (and the detection state it loaded for them) across a rebalance.
            partition_assignment_strategy=(StickyPartitionAssignor, RoundRobinPartitionAssignor),
        )
        self._consumer, self._stop = consumer, stop
        consumer.subscribe(self.topics, listener=_Checkpointer(self))
        if self._dead is not None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                              client_id=f"{self.client_id}-dlq")
            await self._producer.start()
        await consumer.start()
        last = idle = time.monotonic()
        try:
            while not stop.is_set():
                # Records waiting for the writer: look again soon, it may be free by then. With
                # nothing buffered, `getmany` returns as soon as records arrive: wait longer.
                wait_ms = min(self.flush_ms, _WAITING_POLL_MS) if self._uncommitted else _IDLE_POLL_MS
                batch = await consumer.getmany(timeout_ms=wait_ms, max_records=self.max_records)
                if self._failed is not None:
                    raise self._failed
                if self._seeking:
                    continue
                for tp, records in batch.items():
                    if self._dead is not None:
                        await self._add_dead_lettering(records)
                    else:
                        for rec in records:
                            self.sink.add(rec)
                    if records:
                        self._uncommitted[tp] = records[-1].offset
                        self.records += len(records)
                now = time.monotonic()
                if self._due((now - last) * 1000):
                    await self._rotate()
                    last = now
                elif not batch and not self._uncommitted and now - idle >= _IDLE_S:
                    await self.sink_hook("idle", [])
                    idle = now
                if self._written and self._commit_due():
                    await self._commit_written()
            await self.checkpoint()
            await self.sink_hook("revoked", sorted(consumer.assignment()))
        finally:
            if self._in_flight is not None:  # a failed run: let the write in flight end
                await asyncio.wait([self._in_flight])
                if not self._in_flight.cancelled() and self._in_flight.exception() is not None:
                    log.warning("%s: a batch write failed too: %s", self.group_id, self._in_flight.exception())
            # A failed run still commits the batches stored before the failure, unless a
            # rebalance's checkpoint failed (the partitions may be someone else's by now).
            if self._written and self._failed is None:
                try:
                    await asyncio.wait_for(self._commit_written(), _STOP_TIMEOUT_S)
                except Exception as exc:  # noqa: BLE001 - they are replayed, which sinks absorb
                    log.warning("%s: offsets of stored batches not committed: %s", self.group_id, exc)
            try:  # leaving the group waits on its coordinator, which may be gone
                await asyncio.wait_for(consumer.stop(), _STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("%s: the consumer did not stop in %.0f s", self.group_id, _STOP_TIMEOUT_S)
            if self._producer is not None:
                await self._producer.stop()
            log.info("%s stopped after %d records", self.group_id, self.records)

    async def _add_dead_lettering(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """`sink.add` each record; one that raises (it will not decode) is dead-lettered."""
        add = self.sink.add
        for rec in records:
            try:
                add(rec)
            except Exception as exc:
                assert self._dead is not None
                log.error("%s: %s[%d]@%d will not decode, dead-lettered: %s: %s", self.group_id,
                          rec.topic, rec.partition, rec.offset, type(exc).__name__, exc)
                await self._dead_letter(rec, f"{self._dead.stage}:decode", exc)
                self.dead_lettered += 1
        self._raw.append(records)
