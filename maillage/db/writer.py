"""The storage writer's SQL: id caches, COPY into staging, idempotent inserts."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import psycopg

from maillage.db.readings import metric_ids, write_staged
from maillage.envelope import from_us

log = logging.getLogger(__name__)


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

    def resolve(self, conn: psycopg.Connection, names: Iterable[str]) -> dict[str, int]:
        missing = {n for n in names if n not in self._id}
        if missing:
            self._id.update(metric_ids(conn, missing))
        return self._id


_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS storage_stage (device_pk bigint, metric_id smallint, "
    "ts timestamptz, value double precision, received_at timestamptz, seq bigint) "
    "ON COMMIT DELETE ROWS"
)


def write_readings(conn: psycopg.Connection, rows: list[tuple[str, str, str, int, float, int, int | None]],
                   devices: DeviceIds, metrics: MetricIds) -> int:
    """COPY readings (tenant, device, metric, ts_us, value, rx_us, seq) in; return rows inserted.

    The rows go through a temporary staging table into `readings` with `write_staged` (first
    value received wins, rollup buckets of new rows queued in the same transaction).
    """
    pks = devices.resolve(conn, {(r[0], r[1]) for r in rows})
    mids = metrics.resolve(conn, {r[2] for r in rows})
    conn.execute(_STAGE_DDL)
    skipped = 0
    with conn.cursor().copy(
        "COPY storage_stage (device_pk, metric_id, ts, value, received_at, seq) FROM STDIN"
    ) as copy:
        copy.set_types(["int8", "int2", "timestamptz", "float8", "timestamptz", "int8"])
        for tenant, device, metric, ts, value, rx, seq in rows:
            pk = pks.get((tenant, device))
            if pk is None:
                skipped += 1
                continue
            copy.write_row((pk, mids[metric], from_us(ts), value, from_us(rx), seq))
    if skipped:
        log.warning("skipped %d readings of devices no longer registered", skipped)
    # last_seen_at is for "silent device" checks: a minute's precision is plenty, and skipping
    # fresher rows spares PostgreSQL an UPDATE (and a dead tuple) per device per batch.
    conn.execute(
        "UPDATE devices d SET last_seen_at = s.rx FROM "
        "(SELECT device_pk, max(received_at) rx FROM storage_stage GROUP BY device_pk) s "
        "WHERE d.pk = s.device_pk AND (d.last_seen_at IS NULL "
        "OR d.last_seen_at < s.rx - interval '60 seconds')"
    )
    # Fast path: a batch without duplicates (the usual case) is a plain INSERT. A redelivery or
    # replay raises a unique violation; the savepoint is rolled back and the batch goes through
    # the general path (first value received wins, only new rows queue their rollups).
    try:
        with conn.transaction():
            inserted = conn.execute(_FAST_INSERT).rowcount
            conn.execute(_FAST_DIRTY)
        return inserted
    except psycopg.errors.UniqueViolation:
        return write_staged(conn, staging_table="storage_stage")


_FAST_INSERT = (
    "INSERT INTO readings (device_pk, metric_id, ts, value, received_at, seq) "
    "SELECT device_pk, metric_id, ts, value, received_at, seq FROM storage_stage"
)
_FAST_DIRTY = (
    "INSERT INTO rollup_dirty (device_pk, metric_id, bucket) "
    "SELECT DISTINCT device_pk, metric_id, maillage_bucket15(ts) FROM storage_stage"
)


def write_events(conn: psycopg.Connection, rows: list[tuple[str, str, int, str, str, int, int | None]],
                 devices: DeviceIds) -> int:
    """Insert events (tenant, device, ts_us, event, attrs_json, rx_us, seq) idempotently."""
    pks = devices.resolve(conn, {(r[0], r[1]) for r in rows})
    data: list[tuple[Any, ...]] = [
        (pks[(t, d)], from_us(ts), ev, attrs, from_us(rx), seq)
        for t, d, ts, ev, attrs, rx, seq in rows if (t, d) in pks
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO events (device_pk, ts, event, attrs, received_at, seq) "
            "VALUES (%s, %s, %s, %s::jsonb, %s, %s) ON CONFLICT DO NOTHING",
            data,
        )
        return cur.rowcount if cur.rowcount >= 0 else len(data)


def write_status(conn: psycopg.Connection, status: dict[tuple[str, str], tuple[str, int]],
                 devices: DeviceIds) -> None:
    """Set each device's online/offline status unless a newer one is already stored."""
    pks = devices.resolve(conn, status.keys())
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE devices SET status = %s, status_at = %s WHERE pk = %s "
            "AND (status_at IS NULL OR status_at <= %s)",
            [(st, from_us(ts), pks[k], from_us(ts)) for k, (st, ts) in status.items() if k in pks],
        )


def write_rejected(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Store DLQ records once each (keyed by their Kafka position)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO rejected (received_at, mqtt_topic, tenant_id, device_id, reason, detail, "
            "payload, kafka_offset) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (kafka_offset) DO NOTHING",
            rows,
        )
        return len(rows)
