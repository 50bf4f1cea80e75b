"""Devices: rows in PostgreSQL plus broker credentials limited to the device's own topics.

Credentials reach the embedded Mosquitto as rendered password/ACL files (`broker_auth.FileAuth`,
fast for thousands of devices) or, for a broker maillage does not run itself, through the
dynamic-security plugin (`DynsecClient`: a client and a role per device).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from maillage.errors import RegistryError
from maillage.registry.broker_auth import FileAuth, hash_password
from maillage.registry.dynsec import DynsecClient
from maillage.registry.models import DeviceCredentials, DeviceSpec, mqtt_username
from maillage.topics import device_prefix

_COLUMNS = ("tenant_id", "device_id", "type", "mqtt_username", "site", "commune", "district",
            "building", "dwelling", "lat", "lon", "meta", "expected_interval_s", "installed_at",
            "mqtt_password_hash")


def device_role(username: str) -> str:
    """Name of a device's own dynsec role."""
    return f"device:{username}"


def device_acl_commands(tenant: str, device_id: str, password: str) -> list[dict[str, Any]]:
    """dynsec commands giving a device its client and a role limited to its own topics."""
    username = mqtt_username(tenant, device_id)
    prefix = device_prefix(tenant, device_id)
    acls = [
        {"acltype": "publishClientSend", "topic": f"{prefix}up/#", "allow": True, "priority": 0},
        {"acltype": "publishClientSend", "topic": f"{prefix}status", "allow": True, "priority": 0},
        {"acltype": "subscribePattern", "topic": f"{prefix}down/#", "allow": True, "priority": 0},
        {"acltype": "publishClientReceive", "topic": f"{prefix}down/#", "allow": True, "priority": 0},
    ]
    role = device_role(username)
    return [
        {"command": "deleteClient", "username": username},
        {"command": "deleteRole", "rolename": role},
        {"command": "createRole", "rolename": role, "acls": acls},
        {"command": "createClient", "username": username, "password": password,
         "roles": [{"rolename": role}]},
    ]


def add_devices(conn: psycopg.Connection, *, tenant: str, specs: Sequence[DeviceSpec],
                dynsec: DynsecClient | None, broker: FileAuth | None = None) -> list[DeviceCredentials]:
    """Register devices of one tenant (see `register`)."""
    return register(conn, [(tenant, s) for s in specs], dynsec=dynsec, broker=broker)


def register(conn: psycopg.Connection, items: Sequence[tuple[str, DeviceSpec]],
             dynsec: DynsecClient | None, *, broker: FileAuth | None = None) -> list[DeviceCredentials]:
    """Register (tenant, device) pairs in one transaction, then install their broker credentials.

    Everything is checked first (tenants exist, no id twice, none already registered). With
    `dynsec`, the rows are committed only after the broker accepted every credential; with
    `broker` (the embedded Mosquitto's files), the rows are committed, then the files rendered and
    the broker reloaded, and the call returns once the broker accepts the new credentials. With
    neither, the devices get no MQTT access yet (`renew_credentials` gives it later).
    """
    tenants = sorted({t for t, _ in items})
    known = {r[0] for r in conn.execute("SELECT id FROM tenants WHERE id = ANY(%s)", (tenants,))}
    missing = [t for t in tenants if t not in known]
    if missing:
        raise RegistryError(f"unknown tenant(s): {', '.join(missing)} (create with `maillage tenants add`)")
    seen: set[tuple[str, str]] = set()
    for tenant, spec in items:
        if (tenant, spec.device_id) in seen:
            raise RegistryError(f"device {tenant}/{spec.device_id} appears twice")
        seen.add((tenant, spec.device_id))
    creds: list[DeviceCredentials] = []
    with conn.transaction():
        clash = conn.execute(
            "SELECT d.tenant_id || '/' || d.device_id FROM devices d JOIN unnest(%s::text[], %s::text[]) "
            "AS k(t, i) ON d.tenant_id = k.t AND d.device_id = k.i LIMIT 5",
            ([t for t, _ in items], [s.device_id for _, s in items]),
        ).fetchall()
        if clash:
            raise RegistryError(f"already registered: {', '.join(r[0] for r in clash)}")
        commands: list[dict[str, Any]] = []
        with conn.cursor().copy(f"COPY devices ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for tenant, s in items:
                password = secrets.token_urlsafe(18)
                username = mqtt_username(tenant, s.device_id)
                copy.write_row((tenant, s.device_id, s.type.value, username,
                                s.site, s.commune, s.district, s.building, s.dwelling, s.lat, s.lon,
                                orjson.dumps(s.meta).decode(), s.expected_interval_s, s.installed_at,
                                hash_password(password) if dynsec or broker else None))
                if dynsec is not None:
                    commands += device_acl_commands(tenant, s.device_id, password)
                creds.append(DeviceCredentials(
                    device_id=s.device_id, tenant=tenant, mqtt_username=username,
                    mqtt_password=password, topic_prefix=device_prefix(tenant, s.device_id),
                ))
        if dynsec is not None:
            dynsec.run(commands, ignore=("not found",))
    if broker is not None and creds:
        broker.sync(conn, probe=(creds[-1].mqtt_username, creds[-1].mqtt_password))
    return creds


def renew_credentials(conn: psycopg.Connection, *, tenant: str, device_ids: Sequence[str],
                      broker: FileAuth) -> list[DeviceCredentials]:
    """New passwords for many registered devices at once (one render and reload of the broker)."""
    creds = [DeviceCredentials(device_id=d, tenant=tenant, mqtt_username=mqtt_username(tenant, d),
                               mqtt_password=secrets.token_urlsafe(18),
                               topic_prefix=device_prefix(tenant, d)) for d in device_ids]
    if not creds:
        return creds
    with conn.transaction():
        conn.execute(
            "UPDATE devices d SET mqtt_password_hash = n.h FROM unnest(%s::text[], %s::text[]) AS n(i, h) "
            "WHERE d.tenant_id = %s AND d.device_id = n.i",
            ([c.device_id for c in creds], [hash_password(c.mqtt_password) for c in creds], tenant),
        )
    broker.sync(conn, probe=(creds[-1].mqtt_username, creds[-1].mqtt_password))
    return creds
