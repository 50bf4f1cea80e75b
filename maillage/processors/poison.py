"""Poison records and transient failures, for sinks that dead-letter what they can never store.

A sink opts in by being a `DeadLetterSink` (the storage sink): the runner then never stops on
a record. A record whose `add()` raises (it will not decode) or that makes every write fail
(a `DataError`) goes to the sink's dead-letter topic with the stage and the error; a write that
fails for a transient reason (`sink.transient(exc)`: the database is down or restarting) is
retried with a capped back-off instead of stopping the processor. A failing batch is split in
halves until the records at fault are alone: one poison record among 20,000 costs about 30
writes, not 20,000. Offsets are committed by the runner only after this returns, i.e. once
every record of the batch is stored or dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from aiokafka.structs import ConsumerRecord

from maillage.envelope import DlqRecord, Envelope
from maillage.errors import DlqReason

log = logging.getLogger(__name__)

Records = Sequence[ConsumerRecord[bytes, bytes]]
DeadLetter = Callable[[ConsumerRecord[bytes, bytes], str, BaseException], Awaitable[None]]

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0  # the delay between attempts doubles up to this while the database is down


@runtime_checkable
class DeadLetterSink(Protocol):
    """A batch sink that dead-letters instead of stopping (see the module docstring)."""

    dead_letter_topic: str
    stage: str
    """Named in the dead-letter records (`storage`)."""

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None: ...

    def detach(self) -> Any: ...

    def write(self, batch: Any) -> None: ...

    def transient(self, exc: BaseException) -> bool:
        """True for failures that retrying later can cure (database down), not the data's fault."""

    def batch_of(self, records: Records) -> Any:
        """A batch of these records alone, apart from the sink's buffers (skipping any whose
        `add()` raises: they were dead-lettered when they arrived); None when empty."""


def dead_letter_record(record: ConsumerRecord[bytes, bytes], stage: str, exc: BaseException) -> DlqRecord:
    """The DLQ record of a Kafka record a processor cannot store.

    Its receive time is the Kafka record's timestamp: the same record dead-lettered again after
    a replay gives the same DLQ record, stored once (`rejected` is keyed by topic, time, payload).
    """
    tenant, _, device = (record.key or b"").decode("utf-8", "replace").partition("/")
    position = f"{record.topic}[{record.partition}]@{record.offset}"
    error = f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00")
    return DlqRecord(
        mqtt_topic=f"kafka:{record.topic}", tenant=tenant or None, device_id=device or None,
        received_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        reason=DlqReason.NOT_STORED, detail=f"{stage} at {position}: {error}"[:1000],
        payload=record.value or b"")


async def retry(call: Callable[[], None], *, transient: Callable[[BaseException], bool],
                give_up: Callable[[float], bool], what: str) -> None:
    """Run `call` in a worker thread until it succeeds or fails for good.

    Transient failures are retried after a doubling delay; `give_up(seconds failing)` says when
    to stop trying (the processor is stopping, or a rebalance cannot wait) and re-raise.
    """
    delay, first = RETRY_FIRST_S, time.monotonic()
    while True:
        try:
            await asyncio.to_thread(call)
            if delay > RETRY_FIRST_S:
                log.info("%s: succeeded after %.0f s of retries", what, time.monotonic() - first)
            return
        except Exception as exc:
            if not transient(exc) or give_up(time.monotonic() - first):
                raise
            log.warning("%s failed (%s: %s); retrying in %.1f s", what, type(exc).__name__,
                        str(exc).strip()[:200], delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


async def write_or_dead_letter(sink: DeadLetterSink, batch: Any, records: Records, *,
                               dead_letter: DeadLetter,
                               give_up: Callable[[float], bool]) -> int:
    """Write `batch` (the sink's batch of `records`); dead-letter the records no write accepts.

    Returns how many records were dead-lettered.
    """
    if batch is None:
        return 0
    try:
        await retry(lambda: sink.write(batch), transient=sink.transient, give_up=give_up,
                    what=f"{sink.stage} write")
        return 0
    except Exception as exc:
        if sink.transient(exc):
            raise  # given up: the runner stops without committing
        if len(records) <= 1:
            for rec in records:
                log.error("%s: %s[%d]@%d can never be written, dead-lettered: %s: %s", sink.stage,
                          rec.topic, rec.partition, rec.offset, type(exc).__name__, exc)
                await dead_letter(rec, f"{sink.stage}:write", exc)
            return len(records)
        mid = len(records) // 2
        n = 0
        for half in (records[:mid], records[mid:]):
            n += await write_or_dead_letter(sink, sink.batch_of(half), half,
                                            dead_letter=dead_letter, give_up=give_up)
        return n


class Skipper:
    """Decodes envelopes for a sink that only reads them (control, commands): a record that does
    not decode is skipped and logged (the first `log_first`), not raised: the storage stage
    dead-letters it, and raising here would stop the processor on it at every restart."""

    def __init__(self, who: str, log_first: int = 20) -> None:
        self.who = who
        self.log_first = log_first
        self.skipped = 0

    def envelope(self, record: ConsumerRecord[bytes, bytes]) -> Envelope | None:
        try:
            return Envelope.from_kafka(record.value or b"")
        except (ValueError, KeyError, TypeError) as exc:
            self.skipped += 1
            if self.skipped <= self.log_first:
                log.warning("%s: skipping %s[%d]@%d, which does not decode: %s: %s (%d so far)",
                            self.who, record.topic, record.partition, record.offset,
                            type(exc).__name__, exc, self.skipped)
            return None
