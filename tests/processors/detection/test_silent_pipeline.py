"""Silent devices through the whole stage: Kafka -> detection processor (learn) -> detection_state
-> the silence job -> anomalies, outbox -> maillage.anomalies -> the API, on the real services."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from maillage.api.app import create_app
from maillage.db.migrate import migrate
from maillage.processors.detection import silent_job
from maillage.processors.detection.engine import Engine, load_tables
from maillage.processors.detection.outbox import Relay
from maillage.processors.detection.processor import TOPICS, DetectionSink
from maillage.processors.runner import Runner
from maillage.registry.devices import add_devices
from maillage.registry.models import DeviceSpec, DeviceType
from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token
from maillage.stack import kafka
from tests.processors.detection.conftest import MIN, produce_sync, read_anomalies, reading

LAMPS = [f"lamp-{i}" for i in range(6)]


def _rows(db: str, tenant: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT a.device_id, a.kind, a.grp, a.care, a.end_ts IS NULL, a.evidence->'silent', "
            "(SELECT bool_and(produced_at IS NOT NULL) FROM anomaly_outbox) "
            "FROM anomalies a WHERE tenant_id = %s ORDER BY kind", (tenant,)).fetchall()


async def _stage(db: str, bootstrap: str, tenant: str, timeout: float = 120) -> None:
    """Runner, relay and silence job together, as `maillage processor detection` runs them."""
    t = load_tables(["tests.processors.detection.rules_fixture"])
    sink = DetectionSink(db, Engine(t.rules, t.group_rules, quality=t.quality, online=False),
                         group_id=f"det-{uuid.uuid4().hex[:8]}", checkpoint_s=0.5)
    stop = asyncio.Event()
    runner = Runner(bootstrap=bootstrap, topics=TOPICS, group_id=sink.group_id, sink=sink)
    tasks = [asyncio.create_task(runner.run(stop)),
             asyncio.create_task(Relay(db, bootstrap, poll_s=0.2).run(stop)),
             asyncio.create_task(silent_job.watch(database_url=db, stop=stop, period_s=0.5))]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not any(t.done() for t in tasks):
            rows = await asyncio.to_thread(_rows, db, tenant)
            if len(rows) == 2 and all(r[6] for r in rows):
                break
            await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        sink.close()


def test_cabinet_silent_and_care_sensor_silent_end_to_end(fresh_db_url: str, services: Any) -> None:
    """Six lamps of a cabinet silent for a quarter of an hour give one cabinet anomaly, a silent
    care sensor a care one, a meter reporting now none; the topic and the API show them."""
    db, bootstrap = fresh_db_url, services.kafka_bootstrap
    migrate(db)
    kafka.ensure_topics_sync(bootstrap, 2)
    tenant = f"t{uuid.uuid4().hex[:10]}"
    specs = [DeviceSpec(device_id=d, type=DeviceType.STREETLIGHT, meta={"cabinet": "cab-1"})
             for d in LAMPS]
    specs += [DeviceSpec(device_id="door-1", type=DeviceType.CARE_DOOR, dwelling="d1"),
              DeviceSpec(device_id="meter-1", type=DeviceType.METER)]
    with psycopg.connect(db, autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant)
        add_devices(conn, tenant=tenant, specs=specs, dynsec=None)
        em = create_token(conn, tenant=tenant, role="energy_manager")
        cc = create_token(conn, tenant=tenant, role="care_coordinator")
    now = time.time_ns() // 1000
    old = now - 20 * MIN  # five readings a minute apart, the last one 16 minutes ago
    produce_sync(bootstrap, [reading(tenant, d, old + i * MIN, lamp_power_w=80)
                             for i in range(5) for d in [*LAMPS, "door-1"]]
                 + [reading(tenant, "meter-1", now - (4 - i) * MIN, active_power_w=300)
                    for i in range(5)])
    asyncio.run(_stage(db, bootstrap, tenant))
    rows = _rows(db, tenant)
    assert [r[:6] for r in rows] == [
        ("door-1", "device_offline", None, True, True, None),
        ("cab-1", "group_offline", "cabinet:cab-1", False, True, 6)]
    with psycopg.connect(db) as conn:
        learned = conn.execute("SELECT device_id, interval_s FROM detection_state "
                               "WHERE tenant_id = %s ORDER BY device_id", (tenant,)).fetchall()
    assert dict(learned)["lamp-0"] == 60.0
    produced = asyncio.run(read_anomalies(bootstrap, tenant))
    assert sorted((p["kind"], p["change"], p["device_id"]) for p in produced) == [
        ("device_offline", "open", "door-1"), ("group_offline", "open", "cab-1")]
    with TestClient(create_app(db)) as client:
        r = client.get("/v1/anomalies", headers={"Authorization": f"Bearer {em}"})
        assert [(i["kind"], i["device_id"], i["group"]) for i in r.json()["items"]] == [
            ("group_offline", "cab-1", "cabinet:cab-1")]
        r = client.get("/v1/anomalies", headers={"Authorization": f"Bearer {cc}"})
        assert [(i["kind"], i["device_id"]) for i in r.json()["items"]] == [
            ("device_offline", "door-1")]
