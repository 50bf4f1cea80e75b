"""Registering simulated devices before they publish: in the registry, or as an import file."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg

from maillage.registry.devices import add_devices, device_acl_commands
from maillage.registry.models import DeviceCredentials, DeviceSpec, mqtt_username
from maillage.registry.tenants import add_tenant, tenant_exists
from maillage.stack.dynsec import DynsecClient
from maillage.topics import device_prefix

log = logging.getLogger(__name__)

IMPORT_COLUMNS = ("device_id", "type", "lat", "lon", "site", "commune", "district", "building",
                  "dwelling", "expected_interval_s", "installed_at", "meta")


def register(*, database_url: str, mqtt_admin: tuple[str, int, str, str], tenant: str,
             tenant_name: str | None, timezone: str,
             specs: Sequence[DeviceSpec]) -> dict[str, DeviceCredentials]:
    """Create the tenant if missing, register new devices, give known ones fresh credentials.

    Passwords are shown only once, so devices already registered by an earlier run get a new
    password (the simulator is their only user).
    """
    host, port, user, password = mqtt_admin
    with psycopg.connect(database_url, autocommit=True) as conn:
        if not tenant_exists(conn, tenant):
            add_tenant(conn, tenant_id=tenant, name=tenant_name, timezone=timezone)
            log.info("created tenant %s", tenant)
        rows = conn.execute(
            "SELECT device_id FROM devices WHERE tenant_id = %s AND device_id = ANY(%s)",
            (tenant, [s.device_id for s in specs]),
        ).fetchall()
        known = {r[0] for r in rows}
        new = [s for s in specs if s.device_id not in known]
        with DynsecClient(host, port, user, password, timeout_s=120) as dyn:
            creds = {c.device_id: c for c in add_devices(conn, tenant=tenant, specs=new, dynsec=dyn)}
            creds.update(_renew(dyn, tenant, [s.device_id for s in specs if s.device_id in known]))
    log.info("registered %d new devices in %s, renewed credentials of %d", len(new), tenant,
             len(known))
    return creds


def _renew(dyn: DynsecClient, tenant: str, device_ids: list[str]) -> dict[str, DeviceCredentials]:
    import secrets

    out: dict[str, DeviceCredentials] = {}
    commands: list[dict[str, Any]] = []
    for device_id in device_ids:
        pw = secrets.token_urlsafe(18)
        commands += device_acl_commands(tenant, device_id, pw)
        out[device_id] = DeviceCredentials(device_id=device_id, tenant=tenant,
                                           mqtt_username=mqtt_username(tenant, device_id),
                                           mqtt_password=pw,
                                           topic_prefix=device_prefix(tenant, device_id))
    if commands:
        dyn.run(commands, ignore=("not found",))
    return out


def write_import_file(path: Path, specs: Sequence[DeviceSpec]) -> None:
    """A CSV for `maillage devices import` (meta as a JSON object in its own column)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(IMPORT_COLUMNS)
        for s in specs:
            w.writerow([s.device_id, s.type.value, _blank(s.lat), _blank(s.lon), _blank(s.site),
                        _blank(s.commune), _blank(s.district), _blank(s.building),
                        _blank(s.dwelling), _blank(s.expected_interval_s),
                        s.installed_at.isoformat() if s.installed_at else "",
                        orjson.dumps(s.meta).decode() if s.meta else ""])


def _blank(v: object) -> str:
    return "" if v is None else str(v)
