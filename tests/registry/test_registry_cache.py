"""The gateway's registry cache follows the registry through NOTIFY, on the real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from maillage.ingest.registry_cache import RegistryCache
from maillage.registry.devices import register
from maillage.registry.models import DeviceSpec


def _until(predicate, timeout: float = 10) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture
def cache(db_url: str) -> Iterator[RegistryCache]:
    c = RegistryCache(db_url, miss_ttl_s=3600)  # misses would stay an hour without notifications
    c.load()
    yield c
    c.close()


def _add(db_url: str, tenant: str, spec: DeviceSpec) -> None:
    with psycopg.connect(db_url) as conn:
        register(conn, [(tenant, spec)], dynsec=None)


def test_added_deleted_and_changed_devices_are_seen_without_reload(
        db_url: str, tenant: str, cache: RegistryCache) -> None:
    """A miss is forgotten when the device is added; a deletion and a new installation date are
    seen at once, although nothing expires on its own here."""
    assert cache.get(tenant, "m-1") is None  # cached as a miss for an hour
    _add(db_url, tenant, DeviceSpec(device_id="m-1", type="meter"))
    assert _until(lambda: cache.get(tenant, "m-1") is not None)
    assert cache.get(tenant, "m-1").since == datetime(2010, 1, 1, tzinfo=UTC)  # type: ignore[union-attr]

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE devices SET installed_at = '2026-06-01T00:00:00Z' "
                     "WHERE tenant_id = %s AND device_id = 'm-1'", (tenant,))
    assert _until(lambda: cache.get(tenant, "m-1").since == datetime(2026, 6, 1, tzinfo=UTC))  # type: ignore[union-attr]

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM devices WHERE tenant_id = %s", (tenant,))
    assert _until(lambda: cache.get(tenant, "m-1") is None)


def test_status_updates_do_not_notify(db_url: str, tenant: str) -> None:
    """Storage updates status and last_seen_at all the time: they must not churn the caches."""
    _add(db_url, tenant, DeviceSpec(device_id="m-2", type="meter"))
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN maillage_devices")
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE devices SET status = 'online', status_at = now(), "
                         "last_seen_at = now() WHERE tenant_id = %s", (tenant,))
            quiet = [n.payload for n in listener.notifies(timeout=0.5)]
            conn.execute("UPDATE devices SET type = 'streetlight' WHERE tenant_id = %s", (tenant,))
            changed = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert quiet == []
    assert changed == [f"{tenant}/m-2"]  # old and new row are the same key: folded into one
