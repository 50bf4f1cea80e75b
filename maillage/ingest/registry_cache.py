"""The gateway's view of the device registry: a dict, loaded once, refreshed on misses."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """What ingest needs to know of a registered device."""

    pk: int
    type: str
    since: datetime
    """Earliest acceptable measurement time: the installation date when the registry has one
    (a device registered after it was installed may still send its history), else a sanity floor."""


# Measurements before this are a device's unset clock (1970, 2000-01-01 after a reset), not data.
CLOCK_FLOOR = "2010-01-01T00:00:00Z"

_QUERY = f"""
SELECT tenant_id, device_id, pk, type, COALESCE(installed_at, '{CLOCK_FLOOR}'::timestamptz)
FROM devices
"""


class RegistryCache:
    """Device lookups for the hot path. A miss re-reads that one device, at most once per TTL."""

    def __init__(self, database_url: str, miss_ttl_s: float = 5.0) -> None:
        self._url = database_url
        self._known: dict[tuple[str, str], KnownDevice] = {}
        self._misses: dict[tuple[str, str], float] = {}
        self._miss_ttl = miss_ttl_s
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True)
        return self._conn

    def load(self) -> int:
        """Load every device; returns how many."""
        rows = self._connection().execute(_QUERY).fetchall()
        self._known = {(r[0], r[1]): KnownDevice(r[2], r[3], r[4]) for r in rows}
        return len(self._known)

    def get(self, tenant: str, device_id: str) -> KnownDevice | None:
        """The device, or None when it is not registered (negative answers cached for a while)."""
        key = (tenant, device_id)
        found = self._known.get(key)
        if found is not None:
            return found
        now = time.monotonic()
        if now - self._misses.get(key, -1e9) < self._miss_ttl:
            return None
        row = self._connection().execute(
            _QUERY + " WHERE tenant_id = %s AND device_id = %s", key
        ).fetchone()
        if row is None:
            if len(self._misses) > 100_000:  # bounded: a flood of bogus ids must not grow memory
                self._misses.clear()
            self._misses[key] = now
            return None
        dev = KnownDevice(row[2], row[3], row[4])
        self._known[key] = dev
        self._misses.pop(key, None)
        return dev

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
