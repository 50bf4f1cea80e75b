"""The bench's devices and accounts: the session plan, registration, broker accounts removed after."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from maillage import topics
from maillage.bench import queries
from maillage.bench.config import COPY_DEVICES, FEED_DEVICES, TENANT
from maillage.bench.fleet import Archetype, plan_connections
from maillage.bench.publish import Session
from maillage.config import Settings
from maillage.errors import MaillageError
from maillage.registry.models import DeviceSpec, DeviceType
from maillage.registry.tokens import create_token

log = logging.getLogger(__name__)


def plan_sessions(*, run_id: str, mix: list[Archetype], sessions: int,
                  publishers: int) -> tuple[list[list[Session]], list[DeviceSpec], list[DeviceSpec]]:
    """Device sessions per publisher; devices with MQTT access (sessions and probes); feed and
    COPY devices (without)."""
    per_worker = plan_connections(mix, sessions)
    mqtt_specs: list[DeviceSpec] = []
    planned: list[list[Session]] = []
    for w in range(publishers):
        worker = []
        for k, slot in enumerate(per_worker):
            a = mix[slot.archetype]
            did = f"{run_id}-w{w}-{k:02d}-{a.name}"
            mqtt_specs.append(DeviceSpec(device_id=did, type=DeviceType(a.device_type)))
            worker.append(Session(f"{TENANT}/{did}", "", f"{topics.device_prefix(TENANT, did)}{a.channel}",
                                  slot.archetype, slot.weight))
        planned.append(worker)
    mqtt_specs.append(DeviceSpec(device_id=f"{run_id}-probe", type=DeviceType.METER))
    mqtt_specs.append(DeviceSpec(device_id=f"{run_id}-fall", type=DeviceType.CARE_BUTTON))
    silent = [DeviceSpec(device_id=f"{run_id}-feed-{k:02d}", type=DeviceType.METER)
              for k in range(FEED_DEVICES)]
    silent += [DeviceSpec(device_id=f"{run_id}-copy-{k:02d}", type=DeviceType.METER)
               for k in range(COPY_DEVICES)]
    return planned, mqtt_specs, silent


def register_bench_devices(*, db_url: str, settings: Settings, run_id: str, mqtt_specs: list[DeviceSpec],
             silent: list[DeviceSpec], raw_user: str,
             raw_password: str) -> tuple[dict[str, int], dict[str, str]]:
    """Register the bench devices and the raw-MQTT account; returns the devices' keys by id and
    the passwords by username."""
    from maillage.registry.devices import register
    from maillage.registry.dynsec import DynsecClient
    from maillage.registry.tenants import add_tenant, tenant_exists
    from maillage.stack.state import mqtt_admin

    raw_role = f"bench-raw-{run_id}"
    raw_topic = f"bench/{run_id}/#"
    with psycopg.connect(db_url, autocommit=True) as conn:
        if not tenant_exists(conn, TENANT):
            add_tenant(conn, tenant_id=TENANT, name="maillage bench")
        host, port, user, password = mqtt_admin(settings)
        with DynsecClient(host, port, user, password, timeout_s=120) as dyn:
            creds = register(conn, [(TENANT, s) for s in mqtt_specs], dynsec=dyn)
            dyn.run([
                {"command": "createRole", "rolename": raw_role, "acls": [
                    {"acltype": a, "topic": raw_topic, "allow": True, "priority": 0}
                    for a in ("publishClientSend", "subscribePattern", "publishClientReceive")]},
                {"command": "createClient", "username": raw_user, "password": raw_password,
                 "roles": [{"rolename": raw_role}]},
            ])
        register(conn, [(TENANT, s) for s in silent], dynsec=None)
        device_pks = queries.device_pks(conn=conn, tenant=TENANT, like=f"{run_id}-%")
    return device_pks, {c.mqtt_username: c.mqtt_password for c in creds}


def remove_broker_accounts(*, settings: Settings, run_id: str, sessions: list[list[Session]], raw_user: str) -> None:
    """Remove the bench's broker accounts (rows stay: they are the measured data)."""
    from maillage.registry.devices import device_role
    from maillage.registry.dynsec import DynsecClient
    from maillage.stack.state import mqtt_admin

    users = [s.username for w in sessions for s in w] + [f"{TENANT}/{run_id}-probe",
                                                         f"{TENANT}/{run_id}-fall"]
    commands: list[dict[str, Any]] = []
    for u in users:
        commands += [{"command": "deleteClient", "username": u},
                     {"command": "deleteRole", "rolename": device_role(u)}]
    commands += [{"command": "deleteClient", "username": raw_user},
                 {"command": "deleteRole", "rolename": f"bench-raw-{run_id}"}]
    try:
        host, port, user, password = mqtt_admin(settings)
        with DynsecClient(host, port, user, password, timeout_s=120) as dyn:
            dyn.run(commands, ignore=("not found",))
    except MaillageError as exc:
        log.warning("could not remove the bench's broker accounts: %s", exc)


def coordinator_token(*, db_url: str, run_id: str) -> str:
    """A care coordinator's token of the bench tenant, for the alert stream."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return create_token(conn, tenant=TENANT, role="care_coordinator",
                            label=f"bench {run_id} alert probe", ttl_days=1)
