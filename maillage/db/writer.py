"""The storage writer's SQL: id caches, binary COPY straight into readings, idempotent fallback.

Readings arrive as decoded envelopes (one per message and measurement time). They are encoded
here into PostgreSQL's binary COPY format without building per-row Python objects: a message's
device, times and sequence number make one prefix shared by its readings, and times are sent as
integers (binary `timestamptz` is microseconds since 2000-01-01 UTC).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
import psycopg

from maillage.db.readings import create_stage, metric_ids, write_staged
from maillage.db.rollups import SHARDS
from maillage.envelope import from_us

log = logging.getLogger(__name__)

Message = tuple[str, str, int, int, int | None, dict[str, float]]
"""A reading envelope: (tenant, device_id, ts_us, rx_us, seq, {metric: value})."""
Event = tuple[str, str, int, str, bytes, int, int | None]
"""An event: (tenant, device_id, ts_us, event name, attrs as JSON, rx_us, seq)."""

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in Unix microseconds
BUCKET_US = 900_000_000  # 15 minutes: rollup buckets are aligned on 2000-01-01, hence on Unix time
LAST_SEEN_STEP_US = 60_000_000  # last_seen_at is refreshed at most once a minute per device

_SIGNATURE = b"PGCOPY\n\xff\r\n\0" + b"\0\0\0\0" + b"\0\0\0\0"
_TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
# device_pk, ts, received_at (+ seq, then metric_id and value per reading): the COPY column order.
_PREFIX = struct.Struct(">hiqiqiq").pack
_SEQ = struct.Struct(">iq").pack
_VALUE = struct.Struct(">id").pack
_METRIC = struct.Struct(">ih").pack
_SHARD = struct.Struct(">hih").pack  # the field count of a queue row, then its shard
_ARRAY_HEAD = struct.Struct(">iiiii").pack  # dimensions, flags, element type, length, lower bound
_LEN = struct.Struct(">i").pack
_COLUMNS = "(device_pk, ts, received_at, seq, metric_id, value)"


class DeviceIds:
    """(tenant, device_id) -> devices.pk, cached; unknown devices are looked up per batch."""

    def __init__(self) -> None:
        self._pk: dict[tuple[str, str], int] = {}

    def forget(self, tenant: str, device_id: str) -> None:
        """Drop a device whose registry row changed (deleted, registered again: a new pk)."""
        self._pk.pop((tenant, device_id), None)

    def resolve(self, conn: psycopg.Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        missing = {k for k in keys if k not in self._pk}
        if missing:
            rows = conn.execute(
                "SELECT d.tenant_id, d.device_id, d.pk FROM devices d "
                "JOIN unnest(%s::text[], %s::text[]) AS k(t, i) ON d.tenant_id = k.t AND d.device_id = k.i",
                ([k[0] for k in missing], [k[1] for k in missing]),
            ).fetchall()
            for t, i, pk in rows:
                self._pk[(t, i)] = pk
        return self._pk


class MetricIds:
    """metric name -> metrics.id, cached; new names are created by `readings.metric_ids`."""

    def __init__(self) -> None:
        self._id: dict[str, int] = {}
        self.fields: dict[str, bytes] = {}
        """name -> the binary COPY field of its id (length and int2)."""

    def resolve(self, conn: psycopg.Connection, names: Iterable[str]) -> dict[str, int]:
        missing = {n for n in names if n not in self._id}
        if missing:
            for name, mid in metric_ids(conn, missing).items():
                self._id[name] = mid
                self.fields[name] = _METRIC(2, mid)
        return self._id


class LastSeen:
    """Receive time this process last wrote to each device's `last_seen_at` (µs).

    `last_seen_at` serves "silent device" checks: a minute's precision is plenty. Deciding here
    spares most batches the UPDATE; the SQL guard still keeps the newest value when several
    processes write.
    """

    def __init__(self) -> None:
        self._us: dict[int, int] = {}

    def due(self, latest: dict[int, int]) -> dict[int, int]:
        """The devices of `latest` (pk -> newest rx µs in a batch) whose row needs an update."""
        known = self._us
        return {pk: rx for pk, rx in latest.items() if rx - known.get(pk, -LAST_SEEN_STEP_US) >= LAST_SEEN_STEP_US}

    def written(self, updates: dict[int, int]) -> None:
        """Call once the transaction that wrote `updates` committed."""
        self._us.update(updates)


Touched = dict[tuple[int, int], dict[str, Any]]
"""(device pk, 15-minute bucket number) -> a dict whose keys are the metrics written there."""


def encode_readings(msgs: list[Message], pks: dict[tuple[str, str], int], fields: dict[str, bytes],
                    unknown: list[Message] | None = None,
                    ) -> tuple[bytes, int, int, dict[int, int], Touched]:
    """Binary COPY data of the readings of known devices (the others appended to `unknown`).

    Returns (data, rows, rows skipped, pk -> newest rx µs, what the rollup queue needs).
    """
    parts = [_SIGNATURE]
    add = parts.append
    rows = skipped = 0
    latest: dict[int, int] = {}
    touched: Touched = {}
    for tenant, device, ts, rx, seq, values in msgs:
        pk = pks.get((tenant, device))
        if pk is None:
            skipped += len(values)
            if unknown is not None:
                unknown.append((tenant, device, ts, rx, seq, values))
            continue
        prefix = _PREFIX(6, 8, pk, 8, ts - PG_EPOCH_US, 8, rx - PG_EPOCH_US)
        prefix += _NULL if seq is None else _SEQ(8, seq)
        for name, value in values.items():
            add(prefix)
            add(fields[name])
            add(_VALUE(8, value))
        rows += len(values)
        if rx > latest.get(pk, -1):
            latest[pk] = rx
        key = (pk, ts // BUCKET_US)
        seen = touched.get(key)
        if seen is None:
            touched[key] = values
        elif seen is not values and seen.keys() != values.keys():  # usually the same metrics
            touched[key] = {**seen, **values}
    add(_TRAILER)
    return b"".join(parts), rows, skipped, latest, touched


def _array(values: list[int], oid: int, code: str, size: int) -> bytes:
    """A one-dimensional array field of binary COPY (no NULLs)."""
    a = np.empty(len(values), dtype=[("len", ">i4"), ("v", code)])
    a["len"] = size
    a["v"] = values
    body = _ARRAY_HEAD(1, 0, oid, len(values), 1) + a.tobytes()
    return _LEN(len(body)) + body


def queue_rows(touched: Touched, mids: dict[str, int]) -> bytes:
    """Binary COPY data of `rollup_dirty`: per shard, the distinct (device, metric, bucket)."""
    shards: dict[int, tuple[list[int], list[int], list[int]]] = {}
    for (pk, b), names in touched.items():
        lists = shards.get(pk % SHARDS)
        if lists is None:
            lists = shards[pk % SHARDS] = ([], [], [])
        n = len(names)
        lists[0].extend([pk] * n)
        lists[1].extend([mids[name] for name in names])
        lists[2].extend([b] * n)
    parts = [_SIGNATURE]
    for shard, (pks, mid_list, buckets) in shards.items():
        parts += [_SHARD(4, 2, shard), _array(pks, 20, ">i8", 8), _array(mid_list, 21, ">i2", 2),
                  _array(buckets, 23, ">i4", 4)]
    parts.append(_TRAILER)
    return b"".join(parts)


def write_readings(conn: psycopg.Connection, msgs: list[Message], devices: DeviceIds,
                   metrics: MetricIds, last_seen: LastSeen, *,
                   unknown: list[Message] | None = None) -> tuple[int, dict[int, int]]:
    """Write reading envelopes in the caller's transaction; return (rows inserted, last-seen updates).

    Fast path: one binary COPY into `readings` and one into `rollup_dirty` (the distinct
    (device, metric, 15-minute bucket) of the batch, a row per shard), under a savepoint. A
    redelivery or replay raises a unique violation: the savepoint is rolled back and the batch
    goes through the general path (`write_staged`: first value received wins, only new rows queue their rollups).
    Pass the returned updates to `last_seen.written` once the transaction committed. Messages
    of devices no longer registered are appended to `unknown` (the caller dead-letters them).
    """
    pks = devices.resolve(conn, {(m[0], m[1]) for m in msgs})
    names: set[str] = set()
    for m in msgs:
        names.update(m[5])
    mids = metrics.resolve(conn, names)
    data, rows, skipped, latest, touched = encode_readings(msgs, pks, metrics.fields, unknown)
    if skipped and unknown is None:
        log.warning("skipped %d readings of devices no longer registered", skipped)
    if not rows:
        return 0, {}
    updates = last_seen.due(latest)
    if updates:
        conn.execute(
            "UPDATE devices d SET last_seen_at = timestamptz 'epoch' + u.rx * interval '1 microsecond' "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS u(pk, rx) "
            "WHERE d.pk = u.pk AND (d.last_seen_at IS NULL "
            "OR d.last_seen_at < timestamptz 'epoch' + (u.rx - %s) * interval '1 microsecond')",
            (list(updates), list(updates.values()), LAST_SEEN_STEP_US),
        )
    cur = conn.cursor()
    try:
        with conn.transaction():
            with cur.copy(f"COPY readings {_COLUMNS} FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(data)
            with cur.copy("COPY rollup_dirty (shard, device_pks, metric_ids, buckets) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(queue_rows(touched, mids))
        return rows, updates
    except psycopg.errors.UniqueViolation:
        stage = create_stage(conn)
        with cur.copy(f"COPY {stage} {_COLUMNS} FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data)
        return write_staged(conn, staging_table=stage), updates


def _text(value: bytes) -> bytes:
    return _LEN(len(value)) + value


def encode_events(rows: list[Event], pks: dict[tuple[str, str], int],
                  unknown: list[Event] | None = None) -> tuple[bytes, int]:
    """Binary COPY data of the events of known devices (columns `_EVENT_COLUMNS`), and their
    count; the others are appended to `unknown`."""
    parts = [_SIGNATURE]
    n = 0
    for row in rows:
        tenant, device, ts, event, attrs, rx, seq = row
        pk = pks.get((tenant, device))
        if pk is None:
            if unknown is not None:
                unknown.append(row)
            continue
        n += 1
        parts += [_PREFIX(6, 8, pk, 8, ts - PG_EPOCH_US, 8, rx - PG_EPOCH_US),
                  _NULL if seq is None else _SEQ(8, seq), _text(event.encode()),
                  _LEN(len(attrs) + 1), b"\x01", attrs]  # jsonb: format version 1, then the text
    parts.append(_TRAILER)
    return b"".join(parts), n


_EVENT_COLUMNS = "(device_pk, ts, received_at, seq, event, attrs)"
_EVENT_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS events_stage (n bigserial, device_pk bigint, ts timestamptz, "
    "received_at timestamptz, seq bigint, event text, attrs jsonb) ON COMMIT DELETE ROWS"
)


def write_events(conn: psycopg.Connection, rows: list[Event], devices: DeviceIds, *,
                 unknown: list[Event] | None = None) -> int:
    """Insert events idempotently; return how many were new.

    A binary COPY under a savepoint; a batch holding an event already stored (or one twice)
    goes through a staging table and `ON CONFLICT DO NOTHING`, in the order received: the first
    row of a key wins, as for stored rows.
    """
    pks = devices.resolve(conn, {(r[0], r[1]) for r in rows})
    data, n = encode_events(rows, pks, unknown)
    if not n:
        return 0
    cur = conn.cursor()
    try:
        with conn.transaction(), cur.copy(f"COPY events {_EVENT_COLUMNS} FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data)
        return n
    except psycopg.errors.UniqueViolation:
        conn.execute(_EVENT_STAGE_DDL)
        with cur.copy(f"COPY events_stage {_EVENT_COLUMNS} FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data)
        inserted = conn.execute(
            f"INSERT INTO events {_EVENT_COLUMNS} SELECT device_pk, ts, received_at, seq, event, attrs "
            "FROM events_stage ORDER BY n ON CONFLICT DO NOTHING").rowcount
        conn.execute("DELETE FROM events_stage")
        return inserted


def write_status(conn: psycopg.Connection, status: dict[tuple[str, str], tuple[str, int]],
                 devices: DeviceIds, *, unknown: list[tuple[str, str]] | None = None) -> None:
    """Set each device's online/offline status unless a newer one is already stored (the keys of
    devices no longer registered are appended to `unknown`)."""
    pks = devices.resolve(conn, status.keys())
    if unknown is not None:
        unknown.extend(k for k in status if k not in pks)
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE devices SET status = %s, status_at = %s WHERE pk = %s "
            "AND (status_at IS NULL OR status_at <= %s)",
            [(st, from_us(ts), pks[k], from_us(ts)) for k, (st, ts) in status.items() if k in pks],
        )


def rejected_key(mqtt_topic: str, received_us: int, payload: bytes) -> bytes:
    """What identifies a rejected message whatever Kafka did: its topic, receive time and bytes
    (a Kafka offset repeats once the embedded broker lost its log)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(mqtt_topic.encode())
    h.update(received_us.to_bytes(8, "big", signed=True))
    h.update(payload)
    return h.digest()


def write_rejected(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Store DLQ records once each, keyed by `rejected_key`; returns how many were new.

    Rows: (received_at, mqtt_topic, tenant, device_id, reason, detail, payload, kafka position,
    key). Replays of the DLQ topic insert nothing again.
    """
    if not rows:
        return 0
    cols = list(zip(*rows, strict=True))
    return conn.execute(
        "INSERT INTO rejected (received_at, mqtt_topic, tenant_id, device_id, reason, detail, "
        "payload, kafka_offset, record_key) "
        "SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[], "
        "%s::text[], %s::bytea[], %s::text[], %s::bytea[]) "
        "ON CONFLICT (record_key) DO NOTHING",
        [list(c) for c in cols]).rowcount
