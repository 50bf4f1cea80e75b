"""Real services for the tests: PostgreSQL, Mosquitto and Kafka.

They start once per test session on free ports under one temporary directory, with readiness
waits, and stop at the end. `MAILLAGE_DATABASE_URL`, when set, is used as the PostgreSQL server
(a fresh database is created on it); otherwise the embedded PostgreSQL is started. Kafka is
Apache Kafka (one KRaft node) unless `MAILLAGE_TEST_KAFKA=tansu` asks for the in-memory Tansu;
the `maillage up` stacks of the end-to-end tests use the same (`MAILLAGE_KAFKA_KIND`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from maillage.db.migrate import migrate
from maillage.stack import apache_kafka, kafka, mosquitto, postgres
from maillage.stack.mosquitto import MqttCredentials
from maillage.stack.process import ManagedProcess, free_port


@dataclass
class Services:
    """Where the session's services listen."""

    root: Path
    pg_admin_url: str  # the server's maintenance database, for CREATE DATABASE
    mqtt_port: int
    mqtt_creds: MqttCredentials
    kafka_bootstrap: str

    @property
    def mqtt_dir(self) -> Path:
        return self.root / "mosquitto"


def test_kafka_kind() -> str:
    """Which Kafka the session's fixtures start: `apache` (default) or `tansu`."""
    kind = os.environ.get("MAILLAGE_TEST_KAFKA", "apache")
    if kind not in ("apache", "tansu"):
        raise pytest.UsageError(f"MAILLAGE_TEST_KAFKA must be apache or tansu, not {kind!r}")
    return kind


# The stacks the end-to-end tests start (`maillage up` subprocesses) run the same Kafka.
os.environ.setdefault("MAILLAGE_KAFKA_KIND", test_kafka_kind())


def _with_db(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """Start PostgreSQL (or use MAILLAGE_DATABASE_URL), Mosquitto and Kafka for the whole session."""
    # Not under /tmp/pytest-of-*: PostgreSQL and Mosquitto drop privileges and must traverse it.
    root = Path(tempfile.mkdtemp(prefix="maillage-test-", dir="/tmp"))
    root.chmod(0o755)
    procs: list[ManagedProcess] = []
    try:
        given = os.environ.get("MAILLAGE_DATABASE_URL")
        if given:
            pg_url = given
        else:
            proc, pg_url = postgres.start(root / "pg", free_port(), durable=False)
            procs.append(proc)
        mport = free_port()
        mproc, creds = mosquitto.start(root / "mosquitto", mport)
        procs.append(mproc)
        kport = free_port()
        if test_kafka_kind() == "apache":
            procs.append(apache_kafka.start(root, kport, heap_mb=768))
        else:
            procs.append(kafka.start(root, kport))
        yield Services(root, pg_url, mport, creds, f"127.0.0.1:{kport}")
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_db_url(services: Services) -> Iterator[str]:
    """An empty database of its own (no migrations applied), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_db(services.pg_admin_url, name)
    with psycopg.connect(services.pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def db_url(services: Services) -> str:
    """The session's migrated database; tests isolate themselves with uuid-named tenants."""
    name = f"maillage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(services.pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(services.pg_admin_url, name)
    migrate(url)
    return url


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the lit commune's stack once the tests that share it ran (see lighting_stack)."""
    from tests.commands.lighting_stack import release_when_left

    release_when_left(nextitem)
