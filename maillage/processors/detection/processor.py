"""The detection processor: the sink the runner drives over readings, events, status and the DLQ.

Each batch is run through the engine in the runner's worker thread (states of devices and groups
not in memory are loaded first, one query each), and what it produced is committed in one
transaction:

- every batch with transitions: the anomaly rows and the outbox rows (a fall is stored and
  handed to the relay within one batch, a few tens of milliseconds; a batch's events are run and
  committed before its readings);
- every `checkpoint_s` (and before partitions are given away or the process stops): also the
  states changed since the previous checkpoint and the next offset per partition
  (`detection_offsets`).

On partition assignment the consumer seeks to the offsets of the last checkpoint: the database,
not Kafka's committed offsets (lag only), is the truth. A crash replays the records after the
checkpoint from the checkpointed states; the engine being deterministic, they give the same
transitions, which the anomaly upsert (by id) and the outbox (by event id) absorb: nothing is
missed, stored twice or produced twice. A record that does not decode is logged, counted and
skipped with its offset.

Group rules (a dwelling's sensors, a cabinet's lamps) need every device of a group in one
process: true with one detection process; scaling out needs a topic repartitioned by group.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import orjson
import psycopg
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter

from maillage import topics
from maillage.db import detection as db
from maillage.envelope import DlqRecord, Envelope, to_us
from maillage.processors.detection.directory import Directory
from maillage.processors.detection.engine import Engine, is_care
from maillage.processors.detection.model import DeviceInfo, Transition, group_of
from maillage.processors.detection.state import DeviceState, GroupState
from maillage.processors.tasks import LazyConnection

log = logging.getLogger(__name__)

TOPICS = [topics.READINGS, topics.EVENTS, topics.STATUS, topics.DLQ]
GROUP = "maillage-detection"
MAX_POISON_LOGGED = 20
SLOW_BATCH_S = 0.25
"""A batch that takes longer than this is logged with where its time went (falls wait behind
it)…"""
SLOW_LOG_EVERY_S = 10.0
"""…at most once per this many seconds."""

RECORDS = Counter("maillage_detection_records", "Records handled by the detection processor",
                  ["outcome"])
TRANSITIONS = Counter("maillage_detection_transitions", "Anomaly transitions recorded", ["change"])


@dataclass
class Batch:
    """Raw records taken from the sink (decoded in the worker thread)."""

    records: list[tuple[str, int, int, bytes | None]] = field(default_factory=list)
    """(topic, partition, offset, value)."""
    force: bool = False


class DetectionSink(LazyConnection):
    """Runs the engine on each batch and commits its transitions and checkpoints (see above)."""

    def __init__(self, database_url: str, engine: Engine | None = None, *,
                 checkpoint_s: float = 5.0, max_records: int = 20_000,
                 group_id: str = GROUP) -> None:
        self.url = database_url  # autocommit: loads outside a transaction, each write one BEGIN ... COMMIT
        self.engine = engine if engine is not None else Engine()
        self.checkpoint_s = checkpoint_s
        self.max_records = max_records
        self.group_id = group_id
        self.directory = Directory(database_url)
        t = self.engine.tables
        log.info("detection rules: %d by type, %d group, %d data quality, %d for rejects; "
                 "statistical detector %s; checkpoint every %.1f s",
                 sum(map(len, t.rules.values())), sum(map(len, t.group_rules.values())),
                 sum(map(len, t.quality.values())), len(t.on_rejected),
                 "on" if self.engine.online is not None and self.engine.online.cls else "off",
                 checkpoint_s)
        self._conn: psycopg.Connection | None = None
        self._batch = Batch()
        self._next: dict[tuple[str, int], int] = {}  # processed through, not yet checkpointed
        self._last_checkpoint = time.monotonic()
        self.poison = 0
        self.unknown = 0
        self.handled = 0
        self.recorded = 0
        self._parts = dict.fromkeys(("decode", "load", "run", "commit"), 0.0)  # seconds, this write
        self._slow = 0  # slow batches not reported yet
        self._slow_logged = 0.0

    # -- the runner's sink protocol ---------------------------------------------------------

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self._batch.records.append((record.topic, record.partition, record.offset, record.value))

    def full(self) -> bool:
        return len(self._batch.records) >= self.max_records

    def detach(self) -> Batch | None:
        batch, self._batch = self._batch, Batch()
        return batch if batch.records else None

    def flush(self) -> None:
        """Process what was added and checkpoint everything."""
        batch, self._batch = self._batch, Batch()
        batch.force = True
        self.write(batch)

    def assigned(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Where to resume each assigned partition: the checkpointed offset (None: the start).

        States in memory may be older than the database's (another process owned some of these
        devices meanwhile): they are dropped and reloaded on demand."""
        self.engine.forget()
        self._next.clear()
        self._batch = Batch()  # fetched before the seek: they come again from the sought offsets
        stored = db.load_offsets(conn=self._connection(), consumer_group=self.group_id)
        return {tp: stored.get((tp.topic, tp.partition)) for tp in partitions}

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Checkpoint before the partitions go to another process."""
        self.write(Batch(force=True))

    def idle(self, partitions: list[TopicPartition]) -> None:
        """A quiet stream still gets its checkpoint once `checkpoint_s` passed."""
        if self._next:
            self.write(Batch())

    # -- one batch --------------------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        """Run the engine on a batch and commit (see the module docstring); raise on failure.

        Events (falls, panic buttons) go first and their transitions are committed at once:
        they do not wait behind the batch's readings. Readings and events are separate topics that
        Kafka does not order against each other (the engine orders each stream on its own): this
        is one of the orders the batch could have arrived in."""
        conn = self._connection()
        started = time.monotonic()
        self._parts = dict.fromkeys(("decode", "load", "run", "commit"), 0.0)
        try:
            self.directory.refresh()
            urgent = [r for r in batch.records if r[0] == topics.EVENTS]
            rest = [r for r in batch.records if r[0] != topics.EVENTS] if urgent else batch.records
            if urgent:
                self._step(conn, urgent, checkpoint=False)
            for topic, partition, offset, _ in batch.records:
                key = (topic, partition)
                if offset + 1 > self._next.get(key, -1):
                    self._next[key] = offset + 1
            due = batch.force or time.monotonic() - self._last_checkpoint >= self.checkpoint_s
            self._step(conn, rest, checkpoint=due and bool(self._next))
        except psycopg.OperationalError:
            conn.close()  # the runner stops without committing; a restart resumes from the database
            raise
        if due:
            self._last_checkpoint = time.monotonic()
            self._next.clear()
        self._observe(len(batch.records), due, started)

    def _observe(self, records: int, checkpointed: bool, started: float) -> None:
        """A slow batch is logged with where its time went."""
        took = time.monotonic() - started
        if took <= SLOW_BATCH_S:
            return
        self._slow += 1
        if started - self._slow_logged < SLOW_LOG_EVERY_S:
            return
        p = self._parts
        log.info("slow batch (%d since the last report): %d records in %.0f ms: decode %.0f, "
                 "load states %.0f, rules %.0f, commit %.0f%s", self._slow, records, took * 1000,
                 p["decode"] * 1000, p["load"] * 1000, p["run"] * 1000, p["commit"] * 1000,
                 " (with the checkpoint)" if checkpointed else "")
        self._slow, self._slow_logged = 0, started

    def _step(self, conn: psycopg.Connection, records: list[tuple[str, int, int, bytes | None]],
              *, checkpoint: bool) -> None:
        """Decode, load, run and commit the transitions of some records (and the checkpoint)."""
        p, t0 = self._parts, time.monotonic()
        decoded = self._decode(records)
        t1 = time.monotonic()
        self._load(conn, decoded)
        t2 = time.monotonic()
        transitions, care = self._run(decoded)
        t3 = time.monotonic()
        p["decode"] += t1 - t0
        p["load"] += t2 - t1
        p["run"] += t3 - t2
        if not transitions and not checkpoint:
            return
        with conn.transaction():
            if transitions:
                db.record_transitions(conn=conn, transitions=transitions, care=care)
            if checkpoint:
                self._checkpoint(conn)
        p["commit"] += time.monotonic() - t3
        self.recorded += len(transitions)
        for t in transitions:
            TRANSITIONS.labels(t.change).inc()

    def _decode(self, records: list[tuple[str, int, int, bytes | None]]
                ) -> list[tuple[Envelope | DlqRecord, tuple[str, str]]]:
        out: list[tuple[Envelope | DlqRecord, tuple[str, str]]] = []
        for topic, partition, offset, value in records:
            try:
                if value is None:
                    raise ValueError("no value")
                if topic == topics.DLQ:
                    rec = DlqRecord.from_kafka(value)
                    if rec.tenant and rec.device_id:
                        out.append((rec, (rec.tenant, rec.device_id)))
                    continue
                env = Envelope.from_kafka(value)
                out.append((env, (env.tenant, env.device_id)))
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
                self.poison += 1
                RECORDS.labels("poison").inc()
                if self.poison <= MAX_POISON_LOGGED:
                    log.warning("skipping a record that does not decode at %s[%d]@%d: %s "
                                "(%d so far)", topic, partition, offset, exc, self.poison)
        return out

    def _load(self, conn: psycopg.Connection,
              decoded: list[tuple[Envelope | DlqRecord, tuple[str, str]]]) -> None:
        """Registry entries, device states and group states the batch needs and memory lacks."""
        keys = {k for _, k in decoded}
        self.directory.resolve(conn, keys)
        eng = self.engine
        missing = [k for k in keys if k not in eng.devices and self.directory.get(k) is not None]
        series = db.load_series(conn=conn, keys=missing) if eng.online is not None else {}
        for k, raw in db.load_device_states(conn=conn, keys=missing).items():
            eng.put_device(k, DeviceState.from_json(raw, series.get(k)))
        if eng.tables.group_rules:
            groups = set()
            for k in keys:
                info = self.directory.get(k)
                g = group_of(info) if info is not None else None
                if g is not None and (k[0], g) not in eng.groups:
                    groups.add((k[0], g))
            for k, raw in db.load_group_states(conn=conn, keys=groups).items():
                eng.put_group(k, GroupState.from_json(raw))

    def _run(self, decoded: list[tuple[Envelope | DlqRecord, tuple[str, str]]]
             ) -> tuple[list[Transition], list[bool]]:
        transitions: list[Transition] = []
        care: list[bool] = []
        for rec, key in decoded:
            device = self.directory.get(key)
            if device is None:
                self.unknown += 1
                RECORDS.labels("unknown_device").inc()
                continue
            if isinstance(rec, DlqRecord):
                out = self.engine.handle_rejected(device, rec.reason, to_us(rec.received_at))
            else:
                out = self.engine.handle(device, rec)
            self.handled += 1
            if out:
                transitions += out
                care += [is_care(t, device.type) for t in out]
        RECORDS.labels("handled").inc(len(decoded))
        return transitions, care

    def _checkpoint(self, conn: psycopg.Connection) -> None:
        """Changed states and the offsets they cover, in the caller's transaction."""
        devices, groups = self.engine.take_dirty()
        db.save_device_states(conn=conn, rows=[
            (k[0], k[1], st.to_json(), *st.plain_columns()) for k, st in devices.items()])
        db.save_series(conn=conn, rows=[(k[0], k[1], slot, raw) for k, st in devices.items()
                                        for slot, raw in st.series_json().items()])
        db.save_group_states(conn=conn, rows=[(k[0], k[1], g.to_json()) for k, g in groups.items()])
        db.save_offsets(conn=conn, consumer_group=self.group_id, offsets=self._next)

    def device(self, key: tuple[str, str]) -> DeviceInfo | None:
        return self.directory.get(key)

    def close(self) -> None:
        self.directory.close()
        super().close()
