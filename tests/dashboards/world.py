"""A small territory for the dashboard tests, written through the project's own paths: the
registry (tenants, devices), the storage writer (readings, status, rejected), the rollup
refresher, the detection stage's `record_transitions` and the alerting stage's `open_alert`."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from maillage.db import alerting, detection, peak_windows, rollups, savings
from maillage.db.writer import (
    DeviceIds,
    LastSeen,
    Message,
    MetricIds,
    rejected_key,
    write_readings,
    write_rejected,
    write_status,
)
from maillage.envelope import to_us
from maillage.processors.detection.model import Anomaly, Kind, Severity, Transition
from maillage.processors.savings import lighting as lighting_savings
from maillage.registry.devices import add_devices
from maillage.registry.models import DeviceSpec
from maillage.registry.tenants import add_tenant

DAYS = 8
STEP = timedelta(minutes=15)
VITRE, HERMITAGE = "Vitré", "L'Hermitage"  # a quote in a commune name: the variables must quote
SUBSCRIBED_VA = 6000.0


@dataclass
class World:
    """One tenant with meters, lamps, a cabinet and a care home; `other`: a second tenant."""

    tenant: str
    other: str
    now: datetime
    care_device_ids: list[str] = field(default_factory=list)
    residents: list[str] = field(default_factory=list)


def _specs(tenant: str) -> tuple[list[DeviceSpec], list[str]]:
    specs = [
        DeviceSpec(device_id="linky-1", type="meter", commune=VITRE, district="Centre", site="mairie",
                   meta={"subscribed_power_va": SUBSCRIBED_VA}),
        DeviceSpec(device_id="linky-2", type="meter", commune=VITRE, district="Gare", site="école",
                   meta={"subscribed_power_va": SUBSCRIBED_VA}),
        DeviceSpec(device_id="linky-3", type="meter", commune=HERMITAGE, district="Bourg",
                   meta={"subscribed_power_va": 9000}),
        DeviceSpec(device_id="cab-1", type="lighting_cabinet", commune=VITRE, lat=48.124, lon=-1.209),
    ]
    for i in range(4):
        commune = VITRE if i < 3 else HERMITAGE
        specs.append(DeviceSpec(device_id=f"sl-{i + 1}", type="streetlight", commune=commune,
                                lat=48.12 + i / 1000, lon=-1.21 + i / 1000,
                                meta={"cabinet": "cab-1", "nominal_power_w": 70, "lamp_tech": "LED",
                                      "replaced_tech": "HPS", "replaced_power_w": 150}))
    residents = [f"R-{uuid.uuid4().hex[:8]}", f"R-{uuid.uuid4().hex[:8]}"]
    for k, resident in enumerate(residents):
        specs.append(DeviceSpec(device_id=f"care-{k}-motion", type="care_motion", commune=VITRE,
                                dwelling=f"log-{k}", lat=48.1, lon=-1.2, meta={"resident": resident}))
        specs.append(DeviceSpec(device_id=f"care-{k}-button", type="care_button", commune=VITRE,
                                dwelling=f"log-{k}", meta={"resident": resident}))
    return specs, residents


def _lit(ts: datetime) -> bool:
    return ts.hour >= 17 or ts.hour < 7


def _messages(tenant: str, now: datetime) -> list[Message]:
    start = (now - timedelta(days=DAYS)).replace(minute=0, second=0, microsecond=0)
    msgs: list[Message] = []
    energy = {"linky-1": 1e6, "linky-2": 2e6, "linky-3": 5e5}
    lamp_energy = [0.0] * 4
    ts = start
    while ts <= now - timedelta(minutes=1):
        rx = to_us(ts + timedelta(seconds=2))
        hour = ts.hour + ts.minute / 60
        for i, did in enumerate(energy):
            power = 800 + 600 * math.sin(math.pi * hour / 12) ** 2 + 300 * i
            if did == "linky-1" and ts.hour == 19:
                power = 7200.0  # an evening peak above the subscribed 6 kVA
            energy[did] += power / 4
            msgs.append((tenant, did, to_us(ts), rx, None, {
                "energy_import_wh": round(energy[did]), "active_power_w": power,
                "apparent_power_va": power * 1.05}))
        for i in range(4):
            on = _lit(ts) and not (i == 0 and ts > now - timedelta(days=1))  # sl-1 failed yesterday
            lamp_energy[i] += 70 / 4 if on else 0
            msgs.append((tenant, f"sl-{i + 1}", to_us(ts), rx, None, {
                "lamp_on": 1.0 if on else 0.0, "lamp_power_w": 70.0 if on else 0.0,
                "energy_import_wh": round(lamp_energy[i], 1)}))
        ts += STEP
    for k in range(2):
        msgs.append((tenant, f"care-{k}-motion", to_us(now - timedelta(hours=1)),
                     to_us(now - timedelta(hours=1)), None, {"battery_pct": 80.0 - 60 * k}))
    return msgs


def _anomaly(tenant: str, device: str, kind: Kind, severity: Severity, start: datetime) -> Transition:
    return Transition(Anomaly(tenant=tenant, device_id=device, kind=kind, severity=severity, score=0.9,
                              start_us=to_us(start), end_us=None, evidence={"test": True}), "open")


def _alert(conn: psycopg.Connection, tenant: str, device: str, kind: Kind, severity: Severity,
           at: datetime, *, care: bool, anomaly_id: str) -> None:
    alert_id = alerting.open_alert(conn=conn, tenant=tenant, group_key=f"{kind}|{device}", kind=str(kind),
                                   severity=str(severity), device_id=device, grp=None, care=care,
                                   at_us=to_us(at), anomaly_id=anomaly_id, escalate_in_s=None)
    assert alert_id is not None
    alerting.add_event(conn=conn, alert_id=alert_id, action="opened")


def _metered_project(conn: psycopg.Connection, tenant: str, now: datetime) -> None:
    """A savings project on linky-1 and a result as the savings job stores it (the CalTRACK model
    itself needs a year of baseline: its output is given here)."""
    today = now.date()
    project = savings.add_project(conn=conn, tenant=tenant, name="Mairie isolée", meter="linky-1",
                                  baseline_start=today - timedelta(days=8),
                                  baseline_end=today - timedelta(days=4),
                                  reporting_start=today - timedelta(days=4), reporting_end=None,
                                  temperature_station="demo")
    days = [(today - timedelta(days=k), 30.0, 40.0, 10.0, 2.0, 0.5, None, None, "test")
            for k in range(1, 4)]
    savings.store_result(conn=conn, project_id=project["id"], fingerprint="test", status="ok",
                         method="caltrack-daily", days=days)


async def _peak_window(db_url: str, tenant: str, now: datetime) -> None:
    """A demand-response window declared on Vitré two evenings ago (as the API declares it)."""
    start = (now - timedelta(days=2)).replace(hour=18, minute=0, second=0, microsecond=0)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await peak_windows.create_window(conn=conn, tenant=tenant, area="commune", name=VITRE,
                                         start=start, end=start + timedelta(hours=2), level=50,
                                         created_by="test")


def make_world(db_url: str) -> World:
    """Eight days of 15-minute data, anomalies, alerts, rejected messages; rollups refreshed."""
    now = datetime.now(UTC)
    tenant, other = f"dash{uuid.uuid4().hex[:8]}", f"dash{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant, name=f"Territoire {tenant}")
        add_tenant(conn, tenant_id=other, name=f"Autre {other}")
        specs, residents = _specs(tenant)
        add_devices(conn, tenant=tenant, specs=specs, dynsec=None)
        add_devices(conn, tenant=other, specs=[DeviceSpec(device_id="linky-1", type="meter",
                                                          commune="Ailleurs")], dynsec=None)
        world = World(tenant, other, now, [s.device_id for s in specs if s.type.startswith("care_")],
                      residents)
        devices, metrics = DeviceIds(), MetricIds()
        msgs = _messages(tenant, now)
        msgs.append((other, "linky-1", to_us(now - timedelta(hours=2)), to_us(now - timedelta(hours=2)),
                     None, {"energy_import_wh": 10.0, "active_power_w": 100.0}))
        for i in range(0, len(msgs), 5000):
            with conn.transaction():
                write_readings(conn, msgs[i:i + 5000], devices, metrics, LastSeen())
        status = {(tenant, s.device_id): ("online", to_us(now - timedelta(minutes=5))) for s in specs}
        status[(tenant, "sl-1")] = ("offline", to_us(now - timedelta(hours=20)))
        status[(other, "linky-1")] = ("online", to_us(now))
        with conn.transaction():
            write_status(conn, status, devices)
        rx = now - timedelta(minutes=30)
        with conn.transaction():
            write_rejected(conn, [
                (rx + timedelta(seconds=k), f"maillage/{tenant}/linky-1/up/tic", tenant, "linky-1", reason,
                 "test", b"\x02bad", None, rejected_key("t", to_us(rx) + k, reason.encode()))
                for k, reason in enumerate(["bad_checksum", "bad_checksum", "unknown_metric"])])
        transitions = [
            _anomaly(tenant, "linky-1", Kind.OVER_SUBSCRIBED_POWER, Severity.WARNING, now - timedelta(hours=5)),
            _anomaly(tenant, "sl-1", Kind.LAMP_FAILURE, Severity.WARNING, now - timedelta(hours=20)),
            _anomaly(tenant, "care-0-button", Kind.PANIC_BUTTON, Severity.CRITICAL, now - timedelta(hours=2)),
            _anomaly(other, "linky-1", Kind.SPIKE, Severity.WARNING, now - timedelta(hours=1)),
        ]
        with conn.transaction():
            detection.record_transitions(conn=conn, transitions=transitions,
                                         care=[False, False, True, False])
            detection.save_offsets(conn=conn, consumer_group=f"g-{tenant}",
                                   offsets={("maillage.readings", 0): len(msgs)})
            for t, care in zip(transitions, [False, False, True, False], strict=True):
                a = t.anomaly
                _alert(conn, a.tenant, a.device_id, a.kind, a.severity, now - timedelta(hours=1),
                       care=care, anomaly_id=a.id)
        while rollups.refresh_rollups(conn):
            pass
        lighting_savings.compute(conn, tenant_id=tenant)
        _metered_project(conn, tenant, now)
    asyncio.run(_peak_window(db_url, tenant, now))
    return world
