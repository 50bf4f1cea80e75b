"""The gateway's view of the device registry: a dict, loaded once, kept fresh by notifications.

A trigger on `devices` (migration 0005) sends `NOTIFY maillage_devices, 'tenant/device_id'` when a
device is added, deleted, or changes type or installation date. A listener thread drops that
device from the cache, so the next message looks it up again: a deleted device is rejected
(`unknown_device`) and a new one accepted at once, without restarting the gateway. When the
listener loses its connection it reloads everything after reconnecting (notifications sent in
between are lost), and a full reload also happens every `reload_s` as a safety net.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from maillage.db.devices import CLOCK_FLOOR, ingest_view, listen_for_changes
from maillage.envelope import to_us

__all__ = ["CLOCK_FLOOR", "KnownDevice", "RegistryCache"]

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class KnownDevice:
    """What ingest needs to know of a registered device."""

    pk: int
    type: str
    since: datetime
    """Earliest acceptable measurement time: the installation date when the registry has one
    (a device registered after it was installed may still send its history), else a sanity floor."""
    parent: str | None = None
    """The relay registered as speaking for it (`meta.hub`, `meta.cabinet` or `meta.relay`)."""
    since_us: int | None = field(init=False, repr=False, compare=False)
    """`since` in epoch microseconds (None when it has no time zone)."""

    def __post_init__(self) -> None:
        aware = self.since.utcoffset() is not None
        object.__setattr__(self, "since_us", to_us(self.since) if aware else None)


class RegistryCache:
    """Device lookups for the hot path. A miss re-reads that one device, at most once per TTL."""

    def __init__(self, database_url: str, miss_ttl_s: float = 5.0, *, listen: bool = True,
                 reload_s: float = 600.0) -> None:
        self._url = database_url
        self._known: dict[tuple[str, str], KnownDevice] = {}
        self._misses: dict[tuple[str, str], float] = {}
        self._miss_ttl = miss_ttl_s
        self._conn: psycopg.Connection | None = None
        self._listen = listen
        self._reload_s = reload_s
        self._changes = 0  # bumped by each invalidation: a lookup racing with one is not cached
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._listener: threading.Thread | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True)
        return self._conn

    def _query(self, key: tuple[str, str] | None = None) -> list[tuple[Any, ...]]:
        """Every device (or the one of `key`), reconnecting once when the connection was lost."""
        tenant, device_id = key if key is not None else (None, None)
        for attempt in (1, 2):
            try:
                return ingest_view(conn=self._connection(), tenant=tenant, device_id=device_id)
            except psycopg.OperationalError:
                if self._conn is not None:
                    self._conn.close()
                if attempt == 2:
                    raise
                log.warning("registry connection lost; reconnecting")
        raise AssertionError("unreachable")

    def load(self) -> int:
        """Load every device (and start listening for changes first); returns how many."""
        if self._listen and self._listener is None:
            self._listener = threading.Thread(target=self._listen_loop, name="registry-listener",
                                              daemon=True)
            self._listener.start()
            self._listening.wait(10)
        return self._load(self._query())

    def _load(self, rows: list[tuple[Any, ...]]) -> int:
        self._known = {(r[0], r[1]): KnownDevice(r[2], r[3], r[4], r[5]) for r in rows}
        self._misses = {}
        return len(self._known)

    @classmethod
    def in_memory(cls, devices: dict[tuple[str, str], KnownDevice]) -> RegistryCache:
        """A cache of a fixed set of devices, without a database (tests, benchmarks): a device
        not in `devices` is not registered."""
        cache = cls("", listen=False)
        cache._known = dict(devices)
        return cache

    def get(self, tenant: str, device_id: str) -> KnownDevice | None:
        """The device, or None when it is not registered (negative answers cached for a while)."""
        key = (tenant, device_id)
        found = self._known.get(key)
        if found is not None:
            return found
        if not self._url:  # in_memory(): nothing else to look up
            return None
        now = time.monotonic()
        if now - self._misses.get(key, -1e9) < self._miss_ttl:
            return None
        changes = self._changes
        rows = self._query(key)
        cacheable = changes == self._changes
        if not rows:
            if cacheable:
                if len(self._misses) > 100_000:  # bounded: a flood of bogus ids must not grow memory
                    self._misses.clear()
                self._misses[key] = now
            return None
        row = rows[0]
        dev = KnownDevice(row[2], row[3], row[4], row[5])
        if cacheable:
            self._known[key] = dev
            self._misses.pop(key, None)
        return dev

    def invalidate(self, tenant: str, device_id: str) -> None:
        """Forget what is cached about one device (it was added, deleted or changed)."""
        self._changes += 1
        self._known.pop((tenant, device_id), None)
        self._misses.pop((tenant, device_id), None)

    def _listen_loop(self) -> None:
        """Apply NOTIFYs until `close()`; reconnect (and reload everything) after a failure."""
        reconnecting = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    listen_for_changes(conn=conn)
                    self._listening.set()
                    if reconnecting:
                        self._changes += 1
                        n = self._load(ingest_view(conn=conn))
                        log.info("registry listener reconnected; reloaded %d devices", n)
                    last_reload = time.monotonic()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            tenant, _, device_id = note.payload.partition("/")
                            self.invalidate(tenant, device_id)
                        if time.monotonic() - last_reload > self._reload_s:
                            self._changes += 1
                            self._load(ingest_view(conn=conn))
                            last_reload = time.monotonic()
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("registry listener: %s; retrying", exc)
                reconnecting = True
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(5)
        if self._conn is not None:
            self._conn.close()
