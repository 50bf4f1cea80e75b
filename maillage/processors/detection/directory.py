"""The detection processor's view of the registry: `DeviceInfo` per device, kept fresh by NOTIFY.

Devices are looked up per batch (one query for every device the cache misses) and dropped from
the cache when the registry announces a change on `maillage_devices` (migrations 0005 and 0008:
type, installation, place, dwelling, meta, expected interval). Unknown devices are remembered
for `miss_ttl_s` so a flood from an unregistered id costs one query per TTL, not per record.
Everything is looked up again every `reload_s` (a safety net; tenants' time zones are not announced).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from maillage.db import detection as db
from maillage.processors.detection.model import DeviceInfo

log = logging.getLogger(__name__)

CHANNEL = "maillage_devices"


class Directory:
    """(tenant, device_id) -> DeviceInfo, cached; `refresh()` applies the registry's NOTIFYs."""

    def __init__(self, database_url: str, miss_ttl_s: float = 30.0, reload_s: float = 600.0) -> None:
        self.url = database_url
        self.miss_ttl_s = miss_ttl_s
        self.reload_s = reload_s
        self._cleared = time.monotonic()
        self._known: dict[tuple[str, str], DeviceInfo] = {}
        self._misses: dict[tuple[str, str], float] = {}
        self._zones: dict[str, ZoneInfo] = {}
        self._listen: psycopg.Connection | None = None

    def get(self, key: tuple[str, str]) -> DeviceInfo | None:
        return self._known.get(key)

    def refresh(self) -> None:
        """Drop the devices the registry changed since the last call (one round trip)."""
        if self._listen is None or self._listen.closed:
            self._listen = psycopg.connect(self.url, autocommit=True)
            self._listen.add_notify_handler(self._on_notify)
            self._listen.execute(f"LISTEN {CHANNEL}")
            self._known.clear()  # changes missed while not listening
            self._misses.clear()
        try:
            self._listen.execute("SELECT 1")
        except psycopg.OperationalError:
            self._listen.close()
            raise
        if time.monotonic() - self._cleared > self.reload_s:
            # A safety net, and what a tenant's time zone change (not announced) needs.
            self._known.clear()
            self._misses.clear()
            self._cleared = time.monotonic()

    def _on_notify(self, note: psycopg.Notify) -> None:
        tenant, _, device_id = note.payload.partition("/")
        self._known.pop((tenant, device_id), None)
        self._misses.pop((tenant, device_id), None)

    def resolve(self, conn: psycopg.Connection, keys: Iterable[tuple[str, str]]) -> None:
        """Look up every key not cached (and not a recent miss) in one query."""
        now = time.monotonic()
        missing = {k for k in keys if k not in self._known
                   and now - self._misses.get(k, -1e9) >= self.miss_ttl_s}
        if not missing:
            return
        for row in db.device_rows(conn=conn, keys=missing):
            info = self._info(row)
            self._known[(info.tenant, info.device_id)] = info
            missing.discard((info.tenant, info.device_id))
        if len(self._misses) > 100_000:  # bounded: bogus ids must not grow memory
            self._misses.clear()
        for k in missing:
            self._misses[k] = now

    def _zone(self, name: str | None) -> ZoneInfo:
        name = name or "Europe/Paris"
        zone = self._zones.get(name)
        if zone is None:
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("unknown time zone %r: Europe/Paris used", name)
                zone = ZoneInfo("Europe/Paris")
            self._zones[name] = zone
        return zone

    def _info(self, r: tuple[Any, ...]) -> DeviceInfo:
        (tenant, device_id, dtype, tz, lat, lon, commune, district, site, dwelling, meta,
         interval) = r
        return DeviceInfo(tenant=tenant, device_id=device_id, type=dtype, tz=self._zone(tz),
                          lat=lat, lon=lon, commune=commune, district=district, site=site,
                          dwelling=dwelling, meta=meta or {}, expected_interval_s=interval)

    def close(self) -> None:
        if self._listen is not None:
            self._listen.close()
