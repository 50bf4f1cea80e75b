"""Devices: rows in PostgreSQL plus a client and an ACL role in Mosquitto's dynamic security."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from maillage.errors import RegistryError
from maillage.registry.models import DeviceCredentials, DeviceSpec, mqtt_username
from maillage.stack.dynsec import DynsecClient
from maillage.topics import device_prefix

_COLUMNS = ("tenant_id", "device_id", "type", "mqtt_username", "site", "commune", "district",
            "building", "dwelling", "lat", "lon", "meta", "expected_interval_s", "installed_at")


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
                dynsec: DynsecClient | None) -> list[DeviceCredentials]:
    """Register devices of one tenant (see `register`)."""
    return register(conn, [(tenant, s) for s in specs], dynsec=dynsec)


def register(conn: psycopg.Connection, items: Sequence[tuple[str, DeviceSpec]],
             dynsec: DynsecClient | None) -> list[DeviceCredentials]:
    """Register (tenant, device) pairs in one transaction, then install their broker credentials.

    Everything is checked first (tenants exist, no id twice, none already registered); the rows
    are committed only after the broker accepted every credential, so a failure leaves nothing
    behind in the database. With `dynsec=None` the devices get no MQTT access yet
    (`rotate_credentials` gives it later).
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
        with conn.cursor().copy(f"COPY devices ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for tenant, s in items:
                copy.write_row((tenant, s.device_id, s.type.value, mqtt_username(tenant, s.device_id),
                                s.site, s.commune, s.district, s.building, s.dwelling, s.lat, s.lon,
                                orjson.dumps(s.meta).decode(), s.expected_interval_s, s.installed_at))
        commands: list[dict[str, Any]] = []
        for tenant, s in items:
            password = secrets.token_urlsafe(18)
            commands += device_acl_commands(tenant, s.device_id, password)
            creds.append(DeviceCredentials(
                device_id=s.device_id, tenant=tenant,
                mqtt_username=mqtt_username(tenant, s.device_id), mqtt_password=password,
                topic_prefix=device_prefix(tenant, s.device_id),
            ))
        if dynsec is not None:
            dynsec.run(commands, ignore=("not found",))
    return creds


def rotate_credentials(conn: psycopg.Connection, *, tenant: str, device_id: str,
                       dynsec: DynsecClient) -> DeviceCredentials:
    """Give a registered device a new MQTT password (the old one stops working)."""
    row = conn.execute("SELECT 1 FROM devices WHERE tenant_id = %s AND device_id = %s",
                       (tenant, device_id)).fetchone()
    if row is None:
        raise RegistryError(f"unknown device {tenant}/{device_id}")
    password = secrets.token_urlsafe(18)
    dynsec.run(device_acl_commands(tenant, device_id, password), ignore=("not found",))
    return DeviceCredentials(device_id=device_id, tenant=tenant,
                             mqtt_username=mqtt_username(tenant, device_id), mqtt_password=password,
                             topic_prefix=device_prefix(tenant, device_id))
