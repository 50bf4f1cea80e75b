"""The gateway's way to Kafka: records of many MQTT messages, one aiokafka batch per partition.

`producer.send()` per record costs about 12 µs of CPU (a coroutine, a future, the partitioner's
pure-Python murmur2, the accumulator's bookkeeping); appending to a batch builder costs 0.5 µs.
So records are appended to a *generation*: one `BatchBuilder` per (topic, partition), handed to
the producer with one `send_batch()` per partition as soon as Kafka has room for it. A
generation's acknowledgement tokens (which MQTT messages to PUBACK) are released once Kafka
acknowledged every one of its batches, generation after generation, in order.

At most `max_unacked` generations are submitted and not yet acknowledged: aiokafka keeps one
produce request in flight per broker and one queued batch per partition, so a third one would
only wait inside the producer. Meanwhile the next generation keeps filling: batches grow with
the load and the per-batch cost (about 30 µs) fades per record. There is no linger timer: the
caller decides how often records come (the gateway reads MQTT every few milliseconds, and one
read makes one generation when Kafka keeps up), and every timer wake-up has its cost.

Partitions are Kafka's default ones (murmur2 of the key, as the Java client computes it), so
consumers and a real Apache Kafka deployment agree; the hash of each key is cached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

T = TypeVar("T")


class KeyPartitioner:
    """Kafka's default partition of a key, `(murmur2(key) & 0x7fffffff) % partitions`, with each
    key's hash cached (keys are device ids: a bounded set, `max_keys` is only a safety net)."""

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def __call__(self, key: bytes, partitions: int) -> int:
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return h % partitions


@dataclass(slots=True)
class Generation(Generic[T]):
    """Records appended together, submitted together, acknowledged together."""

    batches: dict[tuple[str, int], list[Any]] = field(default_factory=dict)
    """(topic, partition) -> aiokafka `BatchBuilder`s (a second one only when the first is full)."""
    tokens: list[T] = field(default_factory=list)
    messages: int = 0
    records: int = 0

    @property
    def empty(self) -> bool:
        return not self.messages and not self.records


class Outbox(Generic[T]):
    """Appends records to the current generation; `run()` submits and acknowledges generations.

    `on_acked(tokens)` is called with each generation's tokens, in order, once Kafka has all of
    its records. A Kafka failure makes `run()` raise; the tokens of that generation and of the
    later ones are never released.
    """

    def __init__(self, producer: AIOKafkaProducer, topics: Iterable[str],
                 on_acked: Callable[[list[T]], None], *, max_unacked: int = 2,
                 partitioner: KeyPartitioner | None = None) -> None:
        self._producer = producer
        self._topics = tuple(topics)
        self._on_acked = on_acked
        self._partitioner = partitioner or KeyPartitioner()
        self._partitions: dict[str, int] = {}
        self._gen: Generation[T] = Generation()
        self._ready = asyncio.Event()  # the current generation has something
        self._slots = asyncio.Semaphore(max_unacked)
        self._submitted: asyncio.Queue[tuple[list[asyncio.Future[Any]], list[T]]] = asyncio.Queue()
        self._unacked = 0  # generations submitted, not yet acknowledged
        self.acked_generations = 0
        self.batches = 0  # record batches handed to the producer (each is one object in Tansu)

    async def start(self) -> None:
        """Learn the partition count of every topic (waits for the producer's metadata)."""
        await self.refresh_partitions()

    async def refresh_partitions(self) -> None:
        for topic in self._topics:
            self._partitions[topic] = len(await self._producer.partitions_for(topic))

    # --- filling (synchronous, on the hot path) --------------------------------------------------

    def add(self, topic: str, key: bytes, value: bytes, timestamp_ms: int) -> None:
        """Append one record to the current generation (then `note()` its message)."""
        gen = self._gen
        tp = (topic, self._partitioner(key, self._partitions[topic]))
        builders = gen.batches.get(tp)
        if builders is None:
            builders = gen.batches[tp] = [self._producer.create_batch()]
        if builders[-1].append(timestamp=timestamp_ms, key=key, value=value) is None:
            builders.append(self._producer.create_batch())  # full: one more for this partition
            builders[-1].append(timestamp=timestamp_ms, key=key, value=value)
        gen.records += 1

    def note(self, token: T, messages: int) -> None:
        """Count `messages` MQTT messages whose records were all added; release `token` with them."""
        gen = self._gen
        if not gen.tokens:  # the first message of this generation
            self._ready.set()
        gen.tokens.append(token)
        gen.messages += messages

    def discard_current(self) -> None:
        """Forget the generation being filled (its messages were not all converted)."""
        self._gen = Generation()
        self._ready.clear()

    @property
    def pending(self) -> int:
        """Generations submitted or being filled and not yet acknowledged."""
        return self._unacked + (0 if self._gen.empty else 1)

    # --- submitting and acknowledging --------------------------------------------------------------

    async def run(self) -> None:
        """Submit generations and release their tokens, until cancelled or Kafka fails."""
        tasks = [asyncio.create_task(self._submit()), asyncio.create_task(self._acknowledge())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the Kafka failure
        finally:
            for task in tasks:
                task.cancel()

    async def _submit(self) -> None:
        while True:
            await self._submit_next()

    async def _submit_next(self) -> None:
        await self._ready.wait()
        await self._slots.acquire()
        gen, self._gen = self._gen, Generation()
        self._ready.clear()
        self._unacked += 1
        send_batch = self._producer.send_batch
        futures = []
        for (topic, partition), builders in gen.batches.items():
            for builder in builders:
                builder.close()  # no linger inside aiokafka: the batch goes as it is
                futures.append(await send_batch(builder, topic, partition=partition))
        self.batches += len(futures)
        self._submitted.put_nowait((futures, gen.tokens))

    async def _acknowledge(self) -> None:
        while True:
            futures, tokens = await self._submitted.get()
            for fut in futures:
                await fut  # raises on a Kafka failure: these tokens are never released
            self._unacked -= 1
            self.acked_generations += 1
            self._slots.release()
            self._on_acked(tokens)

    async def drain(self, timeout: float) -> bool:
        """Wait until everything added was acknowledged (at stop); False after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self.pending
