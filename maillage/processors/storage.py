"""The storage processor: envelopes from Kafka into PostgreSQL, idempotently, in large batches.

Readings are kept as decoded envelopes (no per-reading Python objects) and written with one
binary COPY into `readings` per batch (`writer.write_readings`); a batch holding a replayed
record or an MQTT redelivery falls back to an idempotent insert where the first value received
for a (device, metric, measurement time) wins. Events, device status and DLQ records are
written in the same transaction.

Nothing is dropped silently: a record of a device no longer registered (deleted after the
gateway accepted it) or with nothing to store is written to `rejected` (the DLQ's table) with
its reason in the same transaction, and counted in `maillage_dlq_records_total{reason}`. A record
that will not decode or that no write accepts is dead-lettered by the runner (`poison.py`):
this sink is a `DeadLetterSink`, so the processor never crash-loops on one record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.db import metric_names, redelivery, writer
from maillage.db.devices import deliver_notifications, listen_for_changes
from maillage.envelope import DlqRecord, to_us
from maillage.errors import DlqReason
from maillage.observability import (
    BATCH_SECONDS,
    DLQ_RECORDS,
    DUPLICATE_ROWS,
    STORAGE_LAG,
    STORED_ROWS,
)

log = logging.getLogger(__name__)

TOPICS = [topics.READINGS, topics.EVENTS, topics.STATUS, topics.DLQ]
GROUP = "maillage-storage"
SLOW_BATCH_S = 0.5
"""A batch whose write or lag is longer than this is logged with where its time went…"""
SLOW_LOG_EVERY_S = 10.0
"""…at most once per this many seconds (a backlog makes every batch slow for a while)."""


@dataclass
class Batch:
    """Records taken from the sink's buffers, written in one transaction."""

    readings: list[writer.Message] = field(default_factory=list)
    rows: int = 0
    events: list[writer.Event] = field(default_factory=list)
    status: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    rejected: list[tuple[Any, ...]] = field(default_factory=list)
    flagged: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    """(index in `readings`, names outside the vocabulary) of readings bringing such names."""
    redelivered: list[int] = field(default_factory=list)
    """Indices in `readings` of copies the broker redelivered (timed by receipt)."""
    redelivered_events: list[int] = field(default_factory=list)
    oldest_rx_us: int = 0
    """Gateway receive time of the batch's oldest reading (0: none), for the lag figures."""
    opened: float = 0.0
    """When the first record was added (epoch s)."""

    def __bool__(self) -> bool:
        return bool(self.readings or self.events or self.status or self.rejected)


def _unstored(kafka_topic: str, tenant: str, device: str, rx_us: int, reason: str, detail: str,
              doc: dict[str, Any]) -> tuple[Any, ...]:
    """A `rejected` row for a record storage accepted from Kafka but could not store."""
    payload = orjson.dumps(doc)
    topic = f"kafka:{kafka_topic}"
    received = datetime.fromtimestamp(rx_us / 1e6, UTC)
    return (received, topic, tenant, device, reason, detail, payload, None,
            writer.rejected_key(topic, rx_us, payload))


_GONE = "the device is no longer registered (deleted after the gateway accepted the message)"


class StorageSink:
    """Buffers records by kind; `flush()` (or `write(detach())`) writes them in one transaction."""

    dead_letter_topic = topics.DLQ
    stage = "storage"

    def __init__(self, database_url: str, max_rows: int = 20_000) -> None:
        self.database_url = database_url
        self.max_rows = max_rows
        self._conn: psycopg.Connection | None = None
        self._listen: psycopg.Connection | None = None
        self.devices = writer.DeviceIds()
        self.metrics = writer.MetricIds()
        self.last_seen = writer.LastSeen()
        self._admitted: set[tuple[str, str]] = set()  # (tenant, unknown name) within the bounds
        self._batch = Batch()
        self.stored = 0
        self.duplicates = 0
        self._slow = 0  # slow batches not reported yet
        self._slow_logged = 0.0

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url)
        return self._conn

    def _forget_changed_devices(self) -> None:
        """Registry changes are NOTIFY'd (migration 0005): drop those devices' cached ids.

        A round trip on the listening connection delivers every notification the server sent
        before it (even a backlog of thousands after a bulk import) to `_on_notify`.
        """
        if self._listen is None or self._listen.closed:
            self._listen = psycopg.connect(self.database_url, autocommit=True)
            self._listen.add_notify_handler(self._on_notify)
            listen_for_changes(conn=self._listen)
            self.devices = writer.DeviceIds()  # changes missed while not listening
        deliver_notifications(conn=self._listen)

    def _on_notify(self, note: psycopg.Notify) -> None:
        tenant, _, device_id = note.payload.partition("/")
        self.devices.forget(tenant, device_id)

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Decode one record into the buffer of its kind (no validation: the gateway did it)."""
        value = record.value
        assert value is not None
        b = self._batch
        if record.topic == topics.DLQ:
            rec = DlqRecord.from_kafka(value)
            b.rejected.append((rec.received_at, rec.mqtt_topic, rec.tenant, rec.device_id,
                               rec.reason, rec.detail, rec.payload,
                               f"{record.topic}[{record.partition}]@{record.offset}",
                               writer.rejected_key(rec.mqtt_topic, to_us(rec.received_at),
                                                   rec.payload)))
            return
        d = orjson.loads(value)
        tenant, device, ts, rx, seq = d["tenant"], d["device_id"], d["ts"], d["rx"], d.get("seq")
        kind = d.get("kind", "reading")
        if kind == "status":
            prev = b.status.get((tenant, device))
            if prev is None or prev[1] <= ts:
                b.status[(tenant, device)] = (d["event"], ts)
            return
        if kind in ("event", "ack"):
            attrs = d.get("attrs") or {}
            if attrs.pop("redelivered", None):
                b.redelivered_events.append(len(b.events))
            if d.get("values"):
                attrs = {**attrs, "values": d["values"]}
            b.events.append((tenant, device, ts, d.get("event") or kind,
                             orjson.dumps(attrs), rx, seq))
            return
        values = d["values"]
        if values:
            if not b.readings:
                b.oldest_rx_us, b.opened = rx, time.time()
            elif rx < b.oldest_rx_us:
                b.oldest_rx_us = rx
            if "attrs" in d and d["attrs"].get("redelivered"):
                b.redelivered.append(len(b.readings))
            unknown = d.get("unknown")
            if unknown:  # rare: names outside the vocabulary, bounded per tenant at write time
                b.flagged.append((len(b.readings), tuple(unknown)))
            b.readings.append((tenant, device, ts, rx, seq, values))
            b.rows += len(values)
        status = (d.get("attrs") or {}).get("status")
        if status is not None:  # a lamp's ok / lampFailure / …: kept as an event of its own
            b.events.append((tenant, device, ts, "lamp_status",
                             orjson.dumps({"status": status}), rx, seq))
        elif not values:  # nothing to store: say so rather than commit its offset silently
            b.rejected.append(_unstored(record.topic, tenant, device, rx, DlqReason.SKIPPED,
                                        f"a {kind} record with no values to store", d))

    def full(self) -> bool:
        return self._batch.rows >= self.max_rows

    def detach(self) -> Batch | None:
        """Hand over what was added so far (for `write` in another thread); None when empty."""
        batch, self._batch = self._batch, Batch()
        return batch if batch else None

    def batch_of(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> Batch | None:
        """These records alone as a batch (the runner's poison search); undecodable ones skipped."""
        saved, self._batch = self._batch, Batch()
        try:
            for rec in records:
                try:
                    self.add(rec)
                except Exception:  # noqa: BLE001 - dead-lettered when it arrived
                    continue
            batch = self._batch
        finally:
            self._batch = saved
        return batch if batch else None

    @staticmethod
    def transient(exc: BaseException) -> bool:
        """The database is down, restarting or in a conflict: retrying later can succeed."""
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError
                          | psycopg.errors.TransactionRollback)

    def flush(self) -> None:
        """Write the buffers in one transaction, then clear them."""
        batch = self._batch
        if batch:
            self.write(batch)  # raises with the buffers kept
        self._batch = Batch()

    def write(self, batch: Batch) -> None:
        """Write one batch in one transaction; raise (nothing stored) on failure."""
        conn = self._connection()
        seen: dict[int, int] = {}
        started, t0 = time.time(), time.perf_counter()
        try:
            self._forget_changed_devices()
            gone: list[tuple[Any, ...]] = []
            admitted: set[tuple[str, str]] = set()
            with conn.transaction():
                readings, events = batch.readings, batch.events
                drop: set[int] = set()
                refused: set[int] = set()
                if batch.redelivered or batch.redelivered_events:
                    drop, events = self._drop_copies(conn, batch)
                if batch.flagged:
                    refused, admitted = self._bound_names(conn, batch, gone)
                    drop |= refused
                if drop:
                    readings = [m for i, m in enumerate(readings) if i not in drop]
                if readings:
                    unknown: list[writer.Message] = []
                    inserted, seen = writer.write_readings(conn, readings, self.devices,
                                                           self.metrics, self.last_seen,
                                                           unknown=unknown)
                    # duplicates: what was not inserted, less what was refused or is unregistered
                    dup = (batch.rows - inserted - sum(len(m[5]) for m in unknown)
                           - sum(len(batch.readings[i][5]) for i in refused))
                    STORED_ROWS.labels("readings").inc(inserted)
                    DUPLICATE_ROWS.labels("readings").inc(dup)
                    self.stored += inserted
                    self.duplicates += dup
                    gone += [_unstored(topics.READINGS, t, dev, rx, DlqReason.UNKNOWN_DEVICE, _GONE,
                                       {"tenant": t, "device_id": dev, "ts": ts, "rx": rx,
                                        "seq": seq, "values": values})
                             for t, dev, ts, rx, seq, values in unknown]
                if events:
                    lost: list[writer.Event] = []
                    n = writer.write_events(conn, events, self.devices, unknown=lost)
                    STORED_ROWS.labels("events").inc(n)
                    gone += [_unstored(topics.EVENTS, t, dev, rx, DlqReason.UNKNOWN_DEVICE, _GONE,
                                       {"tenant": t, "device_id": dev, "ts": ts, "event": ev,
                                        "attrs": orjson.loads(attrs), "rx": rx, "seq": seq})
                             for t, dev, ts, ev, attrs, rx, seq in lost]
                if batch.status:
                    keys: list[tuple[str, str]] = []
                    writer.write_status(conn, batch.status, self.devices, unknown=keys)
                    gone += [_unstored(topics.STATUS, t, dev, batch.status[(t, dev)][1],
                                       DlqReason.UNKNOWN_DEVICE, _GONE,
                                       {"tenant": t, "device_id": dev,
                                        "event": batch.status[(t, dev)][0]})
                             for t, dev in keys]
                if batch.rejected or gone:
                    n = writer.write_rejected(conn, batch.rejected + gone)
                    STORED_ROWS.labels("rejected").inc(n)
                t_rows = time.perf_counter()
        except psycopg.OperationalError:
            conn.close()  # reconnect next time; the runner stops without committing offsets
            if self._listen is not None:
                self._listen.close()
            raise
        self.last_seen.written(seen)
        self._admitted |= admitted
        for row in gone:
            DLQ_RECORDS.labels(row[4]).inc()
        for row in batch.rejected:
            if row[7] is None:  # made here (skipped), not read from the DLQ topic
                DLQ_RECORDS.labels(row[4]).inc()
        t_end = time.perf_counter()
        self._observe(batch, started, t_end - t0, t_rows - t0)

    def _drop_copies(self, conn: psycopg.Connection, batch: Batch,
                     ) -> tuple[set[int], list[writer.Event]]:
        """The indices of readings that are redelivered copies of messages stored already, and
        the events less such copies (both counted as duplicates)."""
        keys = {batch.readings[i][:2] for i in batch.redelivered}
        keys |= {batch.events[i][:2] for i in batch.redelivered_events}
        pks = self.devices.resolve(conn, keys)
        msgs = [(i, pks[batch.readings[i][:2]]) for i in batch.redelivered
                if batch.readings[i][:2] in pks]
        found = redelivery.stored_readings(conn, [(pk, batch.readings[i][5], batch.readings[i][3])
                                                  for i, pk in msgs])
        drop_r = {msgs[j][0] for j in found}
        evs = [(i, pks[batch.events[i][:2]]) for i in batch.redelivered_events
               if batch.events[i][:2] in pks]
        found = redelivery.stored_events(conn, [(pk, batch.events[i][3], batch.events[i][4],
                                                 batch.events[i][5]) for i, pk in evs])
        drop_e = {evs[j][0] for j in found}
        if drop_r or drop_e:
            log.info("dropped %d readings and %d events redelivered by the broker and stored "
                     "already", len(drop_r), len(drop_e))
            DUPLICATE_ROWS.labels("events").inc(len(drop_e))
        return drop_r, [e for i, e in enumerate(batch.events) if i not in drop_e]

    def _bound_names(self, conn: psycopg.Connection, batch: Batch, gone: list[tuple[Any, ...]],
                     ) -> tuple[set[int], set[tuple[str, str]]]:
        """The indices of readings bringing a name beyond the bounds (appended to `gone` as
        `too_many_metric_names`), and the (tenant, name) pairs admitted."""
        wanted: dict[str, set[str]] = {}
        for i, names in batch.flagged:
            tenant = batch.readings[i][0]
            for name in names:
                if (tenant, name) not in self._admitted:
                    wanted.setdefault(tenant, set()).add(name)
        if not wanted:
            return set(), set()
        refused = metric_names.admit(conn, wanted=wanted)
        admitted = {(t, n) for t, names in wanted.items() for n in names - refused.get(t, set())}
        if not refused:
            return set(), admitted
        drop: set[int] = set()
        for i, names in batch.flagged:
            t, dev, ts, rx, seq, values = batch.readings[i]
            over = refused.get(t, set()).intersection(names)
            if over:
                drop.add(i)
                gone.append(_unstored(
                    topics.READINGS, t, dev, rx, DlqReason.TOO_MANY_METRIC_NAMES,
                    f"the tenant's metric names outside the vocabulary are at their bound "
                    f"({metric_names.PER_TENANT} per tenant, {metric_names.TOTAL} in all): "
                    f"{', '.join(sorted(over))[:200]}",
                    {"tenant": t, "device_id": dev, "ts": ts, "rx": rx, "seq": seq, "values": values}))
        return drop, admitted

    def _observe(self, batch: Batch, started: float, write_s: float, rows_s: float) -> None:
        """Batch figures; a slow batch is logged with where its time went."""
        BATCH_SECONDS.observe(write_s)
        rx = batch.oldest_rx_us / 1e6
        lag = started + write_s - rx if rx else 0.0  # gateway receive -> committed, oldest reading
        if rx:
            STORAGE_LAG.observe(lag)
        if max(lag, write_s) <= SLOW_BATCH_S:
            return
        self._slow += 1
        if started - self._slow_logged < SLOW_LOG_EVERY_S:
            return
        log.info("slow batch (%d since the last report): %d readings, %d events, the oldest "
                 "%.0f ms after the gateway received it: %.0f until this process had it (gateway, "
                 "Kafka), %.0f waiting for the writer, %.0f writing (rows %.0f, commit %.0f)",
                 self._slow, batch.rows, len(batch.events), lag * 1000,
                 (batch.opened - rx) * 1000 if rx else 0, (started - batch.opened) * 1000 if rx else 0,
                 write_s * 1000, rows_s * 1000, (write_s - rows_s) * 1000)
        self._slow, self._slow_logged = 0, started

    def close(self) -> None:
        for conn in (self._conn, self._listen):
            if conn is not None:
                conn.close()
