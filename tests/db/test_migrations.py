"""Acceptance 4: a database at any earlier version upgrades to the latest with its data kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from yoyo import read_migrations

from maillage.db.migrate import MIGRATIONS_DIR, applied_migrations, migrate
from maillage.db.readings import query_readings

ALL = [m.id for m in read_migrations(str(MIGRATIONS_DIR))]
T0 = datetime(2025, 3, 29, 23, 0, tzinfo=UTC)  # 00:00 in Paris on the 23-hour day


def _seed_v1(conn: psycopg.Connection) -> int:
    """Data written with the first schema's tables and columns only."""
    conn.execute("INSERT INTO tenants (id, name) VALUES ('old', 'Old town')")
    pk = conn.execute(
        "INSERT INTO devices (tenant_id, device_id, type, mqtt_username, commune) "
        "VALUES ('old', 'm1', 'meter', 'old-m1', 'oldtown') RETURNING pk").fetchone()[0]
    conn.execute("INSERT INTO metrics (name) VALUES ('energy_import_wh'), ('voltage_v')")
    conn.execute(
        "INSERT INTO readings (device_pk, metric_id, ts, value, received_at) "
        "SELECT %s, m.id, %s + h * interval '1 hour', "
        "       CASE m.name WHEN 'voltage_v' THEN 230 ELSE 1000 * h END, now() "
        "FROM metrics m, generate_series(0, 23) h", (pk, T0))
    conn.execute("INSERT INTO events (device_pk, ts, event, received_at) "
                 "VALUES (%s, %s, 'tamper', now())", (pk, T0))
    return int(pk)


def _counts(conn: psycopg.Connection) -> tuple[int, ...]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM devices), "
        "(SELECT count(*) FROM readings), (SELECT sum(value) FROM readings), "
        "(SELECT count(*) FROM events)").fetchone()
    assert row is not None
    return tuple(row)


def test_migrations_form_one_chain() -> None:
    """Each migration depends on the one before, so every earlier version is a prefix."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    for prev, cur in zip(migrations, migrations[1:], strict=False):
        assert {d.id for d in cur.depends} == {prev.id}, cur.id


@pytest.mark.parametrize("start", ALL[:-1])
def test_upgrade_keeps_data(fresh_db_url: str, start: str) -> None:
    """Migrate to `start`, write data, upgrade to the latest: the data is there and rolls up."""
    assert migrate(fresh_db_url, target=start) == ALL[: ALL.index(start) + 1]
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        pk = _seed_v1(conn)
        before = _counts(conn)
    assert migrate(fresh_db_url) == ALL[ALL.index(start) + 1:]
    assert applied_migrations(fresh_db_url) == ALL
    assert migrate(fresh_db_url) == []
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        assert _counts(conn) == before
        kinds = dict(conn.execute("SELECT name, kind FROM metrics").fetchall())
        assert kinds == {"energy_import_wh": "index", "voltage_v": "gauge"}
        if ALL.index(start) < ALL.index("0003_rollups"):
            # Readings stored before the rollups existed are queued by the upgrade.
            days = query_readings(conn, device_pk=pk, metric="energy_import_wh", bucket="1d")
            assert [(d["bucket"], d["value"]) for d in days] == [
                ("2025-03-30T00:00:00+01:00", 23000.0),
                ("2025-03-31T00:00:00+02:00", 0.0),  # the last reading falls on midnight
            ]
            hours = query_readings(conn, device_pk=pk, metric="voltage_v", bucket="1h",
                                   start=T0, end=T0 + timedelta(hours=2))
            assert [h["value"] for h in hours] == [230.0, 230.0]
