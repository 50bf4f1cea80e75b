"""The detection stage's SQL (write side): anomaly rows, the outbox, checkpointed states, offsets.

Writing anomalies, for the detection processor and for any other producer of transitions (the
silent-device job), always inside the caller's transaction:

    record_transitions(*, conn: psycopg.Connection, transitions: Sequence[TransitionLike],
                       care: Callable[[TransitionLike], bool] | Sequence[bool]) -> int

upserts `anomalies` by (id, start_ts) in the given order (an open inserts; an update or a close
sets severity, score, evidence and end_ts, and a closed row is never reopened or changed again),
inserts one `anomaly_outbox` row per transition keyed by `event_id` (ON CONFLICT DO NOTHING: a
replayed transition is not produced twice), and NOTIFYs `maillage_anomaly_outbox` so that the
relay produces promptly once the caller commits. `care` says, per transition, whether it is
health data (`model.CARE_KINDS`, or a device type starting with `care_`). Returns the number of
new outbox rows. `TransitionLike` is `processors.detection.model.Transition` (duck-typed here:
`db` sits below `processors`). Rows of a tenant deleted meanwhile are skipped, not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import orjson
import psycopg

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "maillage_anomaly_outbox"
"""NOTIFY channel: new rows in `anomaly_outbox` (payload empty)."""

_US = "('epoch'::timestamptz + %s * interval '1 microsecond')"


class AnomalyLike(Protocol):
    @property
    def tenant(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def kind(self) -> Any: ...
    @property
    def severity(self) -> Any: ...
    @property
    def score(self) -> float: ...
    @property
    def start_us(self) -> int: ...
    @property
    def end_us(self) -> int | None: ...
    @property
    def evidence(self) -> dict[str, Any]: ...
    @property
    def group(self) -> str | None: ...
    @property
    def id(self) -> str: ...


class TransitionLike(Protocol):
    @property
    def anomaly(self) -> AnomalyLike: ...
    @property
    def change(self) -> str: ...

    @property
    def event_id(self) -> str: ...

    def to_kafka(self) -> bytes: ...


_UPSERT = f"""
INSERT INTO anomalies (id, tenant_id, device_id, kind, severity, score, start_ts, end_ts, evidence,
                       grp, care, updated_at)
SELECT %s, t.id, %s, %s, %s, %s, {_US}, {_US}, %s::jsonb, %s, %s, now()
FROM tenants t WHERE t.id = %s
ON CONFLICT (id, start_ts) DO UPDATE SET
    severity = EXCLUDED.severity, score = EXCLUDED.score, evidence = EXCLUDED.evidence,
    end_ts = EXCLUDED.end_ts, updated_at = now()
WHERE anomalies.end_ts IS NULL
"""

_OUTBOX = """
INSERT INTO anomaly_outbox (event_id, kafka_key, value)
SELECT %s, %s, %s FROM tenants t WHERE t.id = %s
ON CONFLICT (event_id) DO NOTHING
"""


def record_transitions(*, conn: psycopg.Connection, transitions: Sequence[TransitionLike],
                       care: Callable[[TransitionLike], bool] | Sequence[bool]) -> int:
    """Upsert the anomaly rows and queue the transitions for `maillage.anomalies` (see above)."""
    if not transitions:
        return 0
    flags = [care(t) for t in transitions] if callable(care) else list(care)
    if len(flags) != len(transitions):
        raise ValueError("one care flag per transition")
    rows, outbox = [], []
    for t, flag in zip(transitions, flags, strict=True):
        a = t.anomaly
        rows.append((a.id, a.device_id, str(a.kind), str(a.severity), min(1.0, max(0.0, a.score)),
                     a.start_us, a.end_us, orjson.dumps(a.evidence).decode(), a.group, flag, a.tenant))
        outbox.append((t.event_id, f"{a.tenant}/{a.device_id}", t.to_kafka(), a.tenant))
    with conn.cursor() as cur:
        cur.executemany(_UPSERT, rows)
        cur.executemany(_OUTBOX, outbox, returning=False)
        new = cur.rowcount
        conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))
    return max(new, 0)


# -- checkpointed states -------------------------------------------------------------------------

DeviceStateRow = tuple[str, str, bytes, int | None, int | None, float | None]
"""(tenant, device_id, state JSON, last_ts_us, last_rx_us, interval_s)."""


def save_device_states(*, conn: psycopg.Connection, rows: Sequence[DeviceStateRow]) -> None:
    """Upsert device states (one statement for the whole batch)."""
    if not rows:
        return
    cols = list(zip(*rows, strict=True))
    conn.execute(
        """
        INSERT INTO detection_state (tenant_id, device_id, state, last_ts, last_rx, interval_s, updated_at)
        SELECT u.tenant, u.device, u.state::jsonb,
               'epoch'::timestamptz + u.ts * interval '1 microsecond',
               'epoch'::timestamptz + u.rx * interval '1 microsecond', u.interval_s, now()
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[],
                    %s::float8[]) AS u (tenant, device, state, ts, rx, interval_s)
        JOIN tenants t ON t.id = u.tenant
        ON CONFLICT (tenant_id, device_id) DO UPDATE SET
            state = EXCLUDED.state, last_ts = EXCLUDED.last_ts, last_rx = EXCLUDED.last_rx,
            interval_s = EXCLUDED.interval_s, updated_at = now()
        """,
        (list(cols[0]), list(cols[1]), [s.decode() for s in cols[2]], list(cols[3]),
         list(cols[4]), list(cols[5])))


def save_group_states(*, conn: psycopg.Connection, rows: Sequence[tuple[str, str, bytes]]) -> None:
    """Upsert group states: (tenant, group, state JSON)."""
    if not rows:
        return
    cols = list(zip(*rows, strict=True))
    conn.execute(
        """
        INSERT INTO detection_group_state (tenant_id, grp, state, updated_at)
        SELECT u.tenant, u.grp, u.state::jsonb, now()
        FROM unnest(%s::text[], %s::text[], %s::text[]) AS u (tenant, grp, state)
        JOIN tenants t ON t.id = u.tenant
        ON CONFLICT (tenant_id, grp) DO UPDATE SET state = EXCLUDED.state, updated_at = now()
        """,
        (list(cols[0]), list(cols[1]), [s.decode() for s in cols[2]]))


def save_series(*, conn: psycopg.Connection, rows: Sequence[tuple[str, str, str, bytes]]) -> None:
    """Upsert detector states: (tenant, device_id, slot, state JSON)."""
    if not rows:
        return
    cols = list(zip(*rows, strict=True))
    conn.execute(
        """
        INSERT INTO detection_series (tenant_id, device_id, slot, state, updated_at)
        SELECT u.tenant, u.device, u.slot, u.state::jsonb, now()
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS u (tenant, device, slot, state)
        JOIN tenants t ON t.id = u.tenant
        ON CONFLICT (tenant_id, device_id, slot) DO UPDATE SET state = EXCLUDED.state, updated_at = now()
        """,
        (list(cols[0]), list(cols[1]), list(cols[2]), [s.decode() for s in cols[3]]))


def load_series(*, conn: psycopg.Connection,
                keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, bytes]]:
    """The stored detector states of these devices, by slot."""
    keys = list(keys)
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT s.tenant_id, s.device_id, s.slot, s.state::text FROM detection_series s "
        "JOIN unnest(%s::text[], %s::text[]) AS k (tenant, device) "
        "ON s.tenant_id = k.tenant AND s.device_id = k.device",
        ([k[0] for k in keys], [k[1] for k in keys])).fetchall()
    out: dict[tuple[str, str], dict[str, bytes]] = {}
    for r in rows:
        out.setdefault((r[0], r[1]), {})[r[2]] = r[3].encode()
    return out


def load_device_states(*, conn: psycopg.Connection,
                       keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
    """The stored states of these devices (absent when never checkpointed)."""
    keys = list(keys)
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT s.tenant_id, s.device_id, s.state::text FROM detection_state s "
        "JOIN unnest(%s::text[], %s::text[]) AS k (tenant, device) "
        "ON s.tenant_id = k.tenant AND s.device_id = k.device",
        ([k[0] for k in keys], [k[1] for k in keys])).fetchall()
    return {(r[0], r[1]): r[2].encode() for r in rows}


def load_group_states(*, conn: psycopg.Connection,
                      keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
    """The stored states of these (tenant, group) keys."""
    keys = list(keys)
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT s.tenant_id, s.grp, s.state::text FROM detection_group_state s "
        "JOIN unnest(%s::text[], %s::text[]) AS k (tenant, grp) "
        "ON s.tenant_id = k.tenant AND s.grp = k.grp",
        ([k[0] for k in keys], [k[1] for k in keys])).fetchall()
    return {(r[0], r[1]): r[2].encode() for r in rows}


# -- offsets -------------------------------------------------------------------------------------

def save_offsets(*, conn: psycopg.Connection, consumer_group: str,
                 offsets: dict[tuple[str, int], int]) -> None:
    """Record the next offset to consume per (topic, partition)."""
    if not offsets:
        return
    items = sorted(offsets.items())
    conn.execute(
        """
        INSERT INTO detection_offsets (consumer_group, topic, kafka_partition, next_offset, updated_at)
        SELECT %s, u.topic, u.p, u.o, now()
        FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u (topic, p, o)
        ON CONFLICT (consumer_group, topic, kafka_partition) DO UPDATE
            SET next_offset = EXCLUDED.next_offset, updated_at = now()
        """,
        (consumer_group, [k[0] for k, _ in items], [k[1] for k, _ in items], [v for _, v in items]))


def load_offsets(*, conn: psycopg.Connection, consumer_group: str) -> dict[tuple[str, int], int]:
    """The next offset to consume per (topic, partition), as last checkpointed."""
    rows = conn.execute("SELECT topic, kafka_partition, next_offset FROM detection_offsets "
                        "WHERE consumer_group = %s", (consumer_group,)).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


# -- registry ------------------------------------------------------------------------------------

DEVICE_COLUMNS = ("tenant_id", "device_id", "type", "timezone", "lat", "lon", "commune", "district",
                  "site", "dwelling", "meta", "expected_interval_s")

_DEVICES = """
SELECT d.tenant_id, d.device_id, d.type, t.timezone, d.lat, d.lon, d.commune, d.district, d.site,
       d.dwelling, d.meta, d.expected_interval_s
FROM devices d JOIN tenants t ON t.id = d.tenant_id
"""


def device_rows(*, conn: psycopg.Connection,
                keys: Iterable[tuple[str, str]] | None = None) -> list[tuple[Any, ...]]:
    """Registry rows (`DEVICE_COLUMNS`) of these devices, or of every device when None."""
    if keys is None:
        return conn.execute(_DEVICES).fetchall()
    keys = list(keys)
    if not keys:
        return []
    return conn.execute(
        _DEVICES + " JOIN unnest(%s::text[], %s::text[]) AS k (tenant, device) "
        "ON d.tenant_id = k.tenant AND d.device_id = k.device",
        ([k[0] for k in keys], [k[1] for k in keys])).fetchall()


# -- outbox (the relay) --------------------------------------------------------------------------

def pending_outbox(*, conn: psycopg.Connection, limit: int = 1000) -> list[tuple[int, str, str, bytes]]:
    """Rows not produced yet, in commit order: (seq, event_id, key, value)."""
    rows = conn.execute("SELECT seq, event_id, kafka_key, value FROM anomaly_outbox "
                        "WHERE produced_at IS NULL ORDER BY seq LIMIT %s", (limit,)).fetchall()
    return [(r[0], r[1], r[2], bytes(r[3])) for r in rows]


def mark_produced(*, conn: psycopg.Connection, produced: Sequence[tuple[str, int, int]]) -> int:
    """Mark rows produced: (event_id, Kafka partition, offset); returns how many changed."""
    if not produced:
        return 0
    cur = conn.execute(
        """
        UPDATE anomaly_outbox o SET produced_at = now(), kafka_partition = u.p, kafka_offset = u.o
        FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u (event_id, p, o)
        WHERE o.event_id = u.event_id AND o.produced_at IS NULL
        """,
        ([p[0] for p in produced], [p[1] for p in produced], [p[2] for p in produced]))
    return cur.rowcount


def last_produced_offsets(*, conn: psycopg.Connection) -> dict[int, int]:
    """The Kafka offset of the row produced last, per partition of `maillage.anomalies` (the
    last by commit order, not the highest: an embedded broker restarted empty counts from 0)."""
    rows = conn.execute("SELECT DISTINCT ON (kafka_partition) kafka_partition, kafka_offset "
                        "FROM anomaly_outbox WHERE produced_at IS NOT NULL "
                        "ORDER BY kafka_partition, seq DESC").fetchall()
    return {r[0]: r[1] for r in rows}


def prune_outbox(*, conn: psycopg.Connection, keep_days: int = 7) -> int:
    """Delete produced rows older than `keep_days`, keeping each partition's latest (the relay
    resumes its start-up scan from it); returns how many were deleted."""
    cur = conn.execute(
        """
        DELETE FROM anomaly_outbox o
        WHERE o.produced_at < now() - make_interval(days => %s)
          AND o.seq < (SELECT max(k.seq) FROM anomaly_outbox k
                       WHERE k.kafka_partition = o.kafka_partition AND k.produced_at IS NOT NULL)
        """, (keep_days,))
    return cur.rowcount


def enable_anomalies_hypertable(conn: psycopg.Connection) -> bool:
    """Make `anomalies` a hypertable on start_ts when TimescaleDB is installed; False otherwise."""
    from maillage.db.timescale import installed, is_hypertable

    if not installed(conn):
        return False
    if not is_hypertable(conn, "anomalies"):
        conn.execute("SELECT create_hypertable('anomalies', 'start_ts', "
                     "chunk_time_interval => interval '30 days', migrate_data => true)")
    return True
