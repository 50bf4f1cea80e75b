"""Factories for the storage tests: uuid-named tenants and devices, and a reading writer.

Readings are written through the storage processor's own path (`db.writer.write_readings`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime

import orjson
import psycopg
import pytest

from maillage.db import rollups
from maillage.db.writer import DeviceIds, LastSeen, Message, MetricIds, write_readings
from maillage.envelope import to_us

Points = Sequence[tuple[datetime, float]]
Row = tuple[int, str, datetime, float, datetime, int | None]
"""(device pk, metric name, ts, value, received_at, seq)."""


def write_rows(conn: psycopg.Connection, rows: Iterable[Row]) -> int:
    """Store rows as the storage processor does (one message per row); returns rows new."""
    rows = list(rows)
    pks = sorted({r[0] for r in rows})
    names = dict(((pk, (t, d)) for pk, t, d in conn.execute(
        "SELECT pk, tenant_id, device_id FROM devices WHERE pk = ANY (%s)", (pks,))))
    msgs: list[Message] = [(*names[pk], to_us(ts), to_us(rx), seq, {metric: value})
                           for pk, metric, ts, value, rx, seq in rows]
    with conn.transaction():
        inserted, _ = write_readings(conn, msgs, DeviceIds(), MetricIds(), LastSeen())
    return inserted


@pytest.fixture
def write() -> Callable[[psycopg.Connection, Iterable[Row]], int]:
    """`write(conn, rows)`: rows through the production writer (see `write_rows`)."""
    return write_rows


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the session's migrated database."""
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def make_tenant(conn: psycopg.Connection) -> Callable[..., str]:
    """Create a tenant with a fresh id; returns the id."""

    def make(tz: str = "Europe/Paris") -> str:
        tid = f"t{uuid.uuid4().hex[:12]}"
        conn.execute("INSERT INTO tenants (id, name, timezone) VALUES (%s, %s, %s)", (tid, tid, tz))
        return tid

    return make


@pytest.fixture
def make_device(conn: psycopg.Connection) -> Callable[..., int]:
    """Register a device of a tenant; returns its pk."""

    def make(tenant: str, *, type: str = "meter", site: str | None = None,
             district: str | None = None, commune: str | None = None,
             meta: dict[str, object] | None = None) -> int:
        did = f"d{uuid.uuid4().hex[:12]}"
        row = conn.execute(
            "INSERT INTO devices (tenant_id, device_id, type, mqtt_username, site, district, "
            "commune, meta) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING pk",
            (tenant, did, type, f"{tenant}-{did}", site, district, commune,
             orjson.dumps(meta or {}).decode()),
        ).fetchone()
        assert row is not None
        return int(row[0])

    return make


@pytest.fixture
def put(conn: psycopg.Connection) -> Callable[..., int]:
    """Insert (ts, value) points of one metric of a device; returns rows inserted."""

    def write(pk: int, metric: str, points: Points, received_at: datetime | None = None) -> int:
        rx = received_at or datetime.now(UTC)
        return write_rows(conn, [(pk, metric, ts, v, rx, None) for ts, v in points])

    return write


@pytest.fixture
def refresh(conn: psycopg.Connection) -> Callable[[], None]:
    """Run the refresher until both queues are empty."""

    def run() -> None:
        while rollups.refresh_rollups(conn):
            pass

    return run
