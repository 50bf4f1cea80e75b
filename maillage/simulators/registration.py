"""Registering simulated devices before they publish: in the registry, or as an import file."""

from __future__ import annotations

import csv
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from maillage.db.devices import registered_ids
from maillage.registry.broker_auth import FileAuth
from maillage.registry.devices import add_devices, device_acl_commands, renew_credentials
from maillage.registry.dynsec import DynsecClient
from maillage.registry.models import DeviceCredentials, DeviceSpec, mqtt_username
from maillage.registry.tenants import add_tenant, tenant_exists
from maillage.topics import device_prefix

log = logging.getLogger(__name__)

IMPORT_COLUMNS = ("tenant", "device_id", "type", "lat", "lon", "site", "commune", "district",
                  "building", "dwelling", "expected_interval_s", "installed_at")


def register(*, database_url: str, mqtt_admin: tuple[str, int, str, str], tenant: str,
             tenant_name: str | None, timezone: str, specs: Sequence[DeviceSpec],
             relayed: Sequence[DeviceSpec] = (),
             broker: FileAuth | None = None) -> dict[str, DeviceCredentials]:
    """Create the tenant if missing, register new devices, give known ones fresh credentials.

    Passwords are shown only once, so devices already registered by an earlier run get a new
    password (the simulator is their only user). `relayed` devices are registered without MQTT
    access of their own: a relay (concentrator) publishes for them. With `broker` (the embedded
    Mosquitto's credential files) registration takes one reload; else it goes through dynsec.
    """
    host, port, user, password = mqtt_admin
    with psycopg.connect(database_url, autocommit=True) as conn:
        if not tenant_exists(conn, tenant):
            add_tenant(conn, tenant_id=tenant, name=tenant_name, timezone=timezone)
            log.info("created tenant %s", tenant)
        known = _known(conn, tenant, [*specs, *relayed])
        new = [s for s in specs if s.device_id not in known]
        new_relayed = [s for s in relayed if s.device_id not in known]
        if new_relayed:
            add_devices(conn, tenant=tenant, specs=new_relayed, dynsec=None)
        renewed = [s.device_id for s in specs if s.device_id in known]
        if broker is not None:
            creds = {c.device_id: c for c in add_devices(conn, tenant=tenant, specs=new, dynsec=None,
                                                         broker=broker)}
            creds.update({c.device_id: c for c in renew_credentials(conn, tenant=tenant,
                                                                     device_ids=renewed, broker=broker)})
        else:
            with DynsecClient(host, port, user, password, timeout_s=120) as dyn:
                creds = {c.device_id: c for c in add_devices(conn, tenant=tenant, specs=new, dynsec=dyn)}
                creds.update(_renew(dyn, tenant, renewed))
    log.info("registered %d new devices in %s (%d relayed), renewed credentials of %d",
             len(new) + len(new_relayed), tenant, len(new_relayed), len(specs) - len(new))
    return creds


def _known(conn: psycopg.Connection, tenant: str, specs: Sequence[DeviceSpec]) -> set[str]:
    return registered_ids(conn=conn, tenant=tenant, device_ids=[s.device_id for s in specs])


def _renew(dyn: DynsecClient, tenant: str, device_ids: list[str]) -> dict[str, DeviceCredentials]:
    """New passwords for registered devices; full broker accounts for those the broker lost."""
    out: dict[str, DeviceCredentials] = {}
    for device_id in device_ids:
        out[device_id] = DeviceCredentials(device_id=device_id, tenant=tenant,
                                           mqtt_username=mqtt_username(tenant, device_id),
                                           mqtt_password=secrets.token_urlsafe(18),
                                           topic_prefix=device_prefix(tenant, device_id))
    if not out:
        return out
    # One command per device: the plugin rewrites its whole file after each one.
    responses = dyn.run([{"command": "setClientPassword", "username": c.mqtt_username,
                          "password": c.mqtt_password} for c in out.values()],
                        ignore=("not found",))
    lost = [c for c, r in zip(out.values(), responses, strict=True) if r.get("error")]
    if lost:
        dyn.run([cmd for c in lost for cmd in device_acl_commands(tenant, c.device_id,
                                                                  c.mqtt_password)],
                ignore=("not found",))
    return out


def write_import_file(path: Path, tenant: str, specs: Sequence[DeviceSpec]) -> None:
    """A CSV for `maillage devices import`: the spec fields, then one `meta.<key>` column per key."""
    meta_keys = sorted({k for s in specs for k in s.meta})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*IMPORT_COLUMNS, *(f"meta.{k}" for k in meta_keys)])
        for s in specs:
            w.writerow([tenant, s.device_id, s.type.value, _cell(s.lat), _cell(s.lon),
                        _cell(s.site), _cell(s.commune), _cell(s.district), _cell(s.building),
                        _cell(s.dwelling), _cell(s.expected_interval_s),
                        s.installed_at.isoformat() if s.installed_at else "",
                        *(_cell(s.meta.get(k)) for k in meta_keys)])


def read_credentials(path: Path) -> dict[str, DeviceCredentials]:
    """Credentials written by `maillage devices import --credentials-out` (CSV)."""
    with path.open(newline="") as f:
        return {row["device_id"]: DeviceCredentials(**row) for row in csv.DictReader(f)}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
