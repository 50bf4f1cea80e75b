"""Device -> Mosquitto -> gateway -> Kafka -> storage -> PostgreSQL -> API, on real components."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from maillage import topics
from tests.e2e.conftest import Publisher, Stack, wait_until


def _count(db: str, tenant: str, device_id: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM readings r JOIN devices d ON d.pk = r.device_pk "
            "WHERE d.tenant_id = %s AND d.device_id = %s", (tenant, device_id)).fetchone()
    assert row is not None
    return int(row[0])


def _rejected(db: str, tenant: str, device_id: str) -> list[tuple[str, bytes]]:
    with psycopg.connect(db) as conn:
        return [(r[0], bytes(r[1])) for r in conn.execute(
            "SELECT reason, payload FROM rejected WHERE tenant_id = %s AND device_id = %s ORDER BY id",
            (tenant, device_id)).fetchall()]


def test_n_readings_over_mqtt_are_stored_exactly_once(stack: Stack) -> None:
    """N QoS 1 publications with device credentials end as exactly N rows, in SQL and via the API."""
    tenant = stack.tenant()
    dev = stack.device(tenant)
    token = stack.token(tenant, "energy_manager")
    n = 300
    start = datetime(2026, 11, 20, tzinfo=UTC)
    pub = Publisher(stack, dev)
    try:
        for i in range(n):
            ts = (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")
            rc = pub.publish("up/json", orjson.dumps({"ts": ts, "seq": i, "values": {"active_power_w": 100.0 + i}}))
            assert not rc.is_failure
    finally:
        pub.close()
    assert wait_until(lambda: _count(stack.db(), tenant, dev.device_id) >= n, timeout=60)
    assert _count(stack.db(), tenant, dev.device_id) == n
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"metric": "active_power_w", "limit": 100}
        if cursor:
            params["after"] = cursor
        resp = stack.get(f"/v1/devices/{dev.device_id}/readings", token, **params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items += body["items"]
        cursor = body["next"]
        if not cursor:
            break
    assert len(items) == n
    assert items[0] == {"ts": "2026-11-20T00:00:00Z", "metric": "active_power_w", "value": 100.0}
    assert items[-1]["value"] == 100.0 + n - 1


def test_device_cannot_publish_under_another_prefix(stack: Stack) -> None:
    """The broker refuses (MQTT v5 reason 135) and nothing is stored for the other device."""
    tenant = stack.tenant()
    a, b = stack.device(tenant), stack.device(tenant)
    other_tenant = stack.tenant()
    c = stack.device(other_tenant)
    pub = Publisher(stack, a)
    payload = orjson.dumps({"ts": "2026-11-20T00:00:00Z", "values": {"active_power_w": 1.0}})
    try:
        for target in (b, c):
            rc = pub.publish("", payload, topic=f"{target.prefix}up/json")
            assert rc.is_failure and rc.value == 135, rc  # Not authorized
        ok = pub.publish("up/json", payload)  # its own prefix still works
        assert not ok.is_failure
    finally:
        pub.close()
    assert wait_until(lambda: _count(stack.db(), tenant, a.device_id) == 1, timeout=30)
    assert _count(stack.db(), tenant, b.device_id) == 0
    assert _count(stack.db(), other_tenant, c.device_id) == 0
    assert _rejected(stack.db(), tenant, b.device_id) == []


def test_token_of_one_tenant_cannot_read_another(stack: Stack) -> None:
    """Tenant A's token: B's device is not found, not listed, its readings are not readable."""
    ta, tb = stack.tenant(), stack.tenant()
    dev_b = stack.device(tb)
    token_a = stack.token(ta, "admin")
    assert stack.get(f"/v1/devices/{dev_b.device_id}", token_a).status_code == 404
    assert stack.get(f"/v1/devices/{dev_b.device_id}/readings", token_a).status_code == 404
    assert stack.get(f"/v1/devices/{dev_b.device_id}", token_a, tenant=tb).status_code == 404
    listed = stack.get("/v1/devices", token_a).json()["items"]
    assert dev_b.device_id not in [d["device_id"] for d in listed]
    assert stack.get("/v1/devices", "not-a-token").status_code == 401
    assert stack.get(f"/v1/devices/{dev_b.device_id}", stack.token(tb)).status_code == 200


def test_bad_payloads_go_to_the_dlq_and_serving_continues(stack: Stack) -> None:
    """Malformed JSON, a bad timestamp and a non-numeric value are rejected with reasons."""
    tenant = stack.tenant()
    dev = stack.device(tenant)
    bad = [
        (b"{not json", "malformed"),
        (orjson.dumps({"ts": "yesterday", "values": {"active_power_w": 1}}), "bad_timestamp"),
        (orjson.dumps({"ts": "2026-11-20T00:00:00Z", "values": {"active_power_w": "high"}}), "bad_value"),
        (orjson.dumps({"ts": "2099-01-01T00:00:00Z", "values": {"active_power_w": 1}}), "future_timestamp"),
    ]
    pub = Publisher(stack, dev)
    try:
        for payload, _ in bad:
            assert not pub.publish("up/json", payload).is_failure
        good = orjson.dumps({"ts": "2026-11-20T00:00:00Z", "values": {"active_power_w": 7.5, "odd_metric_x": 1}})
        pub.publish("up/json", good)
    finally:
        pub.close()
    assert wait_until(lambda: len(_rejected(stack.db(), tenant, dev.device_id)) >= len(bad), timeout=30)
    assert _rejected(stack.db(), tenant, dev.device_id) == [(reason, payload) for payload, reason in bad]
    assert wait_until(lambda: _count(stack.db(), tenant, dev.device_id) == 2, timeout=30)
    with psycopg.connect(stack.db()) as conn:
        row = conn.execute("SELECT known FROM metrics WHERE name = 'odd_metric_x'").fetchone()
    assert row == (False,)  # unknown names are kept and flagged, not dropped

    async def dlq_reasons() -> list[str]:
        consumer = AIOKafkaConsumer(topics.DLQ, bootstrap_servers=stack.status["kafka_bootstrap"],
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            got = await consumer.getmany(timeout_ms=3000, max_records=10_000)
        finally:
            await consumer.stop()
        return [orjson.loads(r.value)["reason"] for recs in got.values() for r in recs
                if orjson.loads(r.value)["device_id"] == dev.device_id]

    assert sorted(asyncio.run(dlq_reasons())) == sorted(r for _, r in bad)


def test_replayed_kafka_records_are_stored_once(stack: Stack) -> None:
    """The same records produced twice to maillage.readings: each reading is stored once."""
    tenant = stack.tenant()
    dev = stack.device(tenant)
    base = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp() * 1_000_000)
    records = [orjson.dumps({"tenant": tenant, "device_id": dev.device_id, "kind": "reading",
                             "ts": base + i * 60_000_000, "rx": base + i * 60_000_000, "fmt": "json",
                             "values": {"energy_import_wh": 1000.0 + i, "voltage_v": 231.0}})
               for i in range(50)]

    async def produce_twice() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.status["kafka_bootstrap"], acks="all")
        await producer.start()
        try:
            for _ in range(2):
                for rec in records:
                    await producer.send_and_wait(topics.READINGS, rec, key=f"{tenant}/{dev.device_id}".encode())
        finally:
            await producer.stop()

    asyncio.run(produce_twice())
    assert wait_until(lambda: _count(stack.db(), tenant, dev.device_id) >= 100, timeout=30)
    import time

    time.sleep(2)  # let the second copy arrive too
    assert _count(stack.db(), tenant, dev.device_id) == 100


def test_hourly_energy_and_csv_through_the_api(stack: Stack) -> None:
    """Index readings over MQTT become hourly energy (index differences) and a CSV export."""
    tenant = stack.tenant()
    dev = stack.device(tenant)
    token = stack.token(tenant, "energy_manager")
    start = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)  # 01:00 in Paris (UTC+1 in November)
    pub = Publisher(stack, dev)
    try:  # every 15 min for 3 h: +250 Wh per quarter hour = 1000 Wh per hour
        records = [{"ts": (start + timedelta(minutes=15 * i)).isoformat(),
                    "values": {"energy_import_wh": 10_000.0 + 250.0 * i, "active_power_w": 1000.0}}
                   for i in range(13)]
        assert not pub.publish("up/json", orjson.dumps(records)).is_failure
    finally:
        pub.close()
    assert wait_until(lambda: _count(stack.db(), tenant, dev.device_id) == 26, timeout=30)
    resp = stack.get(f"/v1/devices/{dev.device_id}/readings", token, metric="energy_import_wh",
                     bucket="1h", tz="Europe/Paris", **{"from": "2026-11-02T00:00:00Z", "to": "2026-11-02T03:00:00Z"})
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert [i["bucket"] for i in items] == ["2026-11-02T01:00:00+01:00", "2026-11-02T02:00:00+01:00",
                                            "2026-11-02T03:00:00+01:00"]
    assert [round(i["value"], 6) for i in items] == [1000.0, 1000.0, 1000.0]
    csv = stack.get(f"/v1/devices/{dev.device_id}/readings", token, metric="active_power_w", bucket="1h",
                    format="csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("bucket,metric,value")


def test_cli_import_of_10000_devices_gives_working_credentials(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`maillage devices import` of 10,000 rows: all registered with broker credentials, a device
    publishes under its own prefix only; a file with one bad row leaves nothing behind."""
    import csv

    tenant = stack.tenant()
    rows = [{"device_id": f"lamp-{i:05d}", "type": "streetlight", "lat": f"{48.1 + i / 1e6:.6f}",
             "lon": "-1.2", "commune": "Vitré", "meta.lamp_technology": "LED"} for i in range(10_000)]
    path = tmp_path / "assets.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "creds.csv"
    done = stack.cli("devices", "import", str(path), "--tenant", tenant, "--credentials-out", str(out))
    assert "imported 10000 devices" in done.stdout
    with psycopg.connect(stack.db()) as conn:
        row = conn.execute("SELECT count(*), count(mqtt_password_hash) FROM devices WHERE tenant_id = %s",
                           (tenant,)).fetchone()
    assert row == (10_000, 10_000)
    with out.open() as fh:
        creds = list(csv.DictReader(fh))
    last = creds[-1]
    from tests.e2e.conftest import Device

    dev = Device(tenant, last["device_id"], last["mqtt_username"], last["mqtt_password"], last["topic_prefix"])
    pub = Publisher(stack, dev)
    try:
        ok = pub.publish("up/json", orjson.dumps({"ts": "2026-11-20T00:00:00Z", "values": {"lamp_on": 1}}))
        assert not ok.is_failure
        refused = pub.publish("", b"{}", topic=creds[0]["topic_prefix"] + "up/json")
        assert refused.is_failure and refused.value == 135
    finally:
        pub.close()
    assert wait_until(lambda: _count(stack.db(), tenant, dev.device_id) == 1, timeout=30)

    bad = tmp_path / "bad.csv"
    bad.write_text("device_id,type\nok-1,meter\nok-2,kettle\n")
    failed = stack.cli("devices", "import", str(bad), "--tenant", tenant, check=False)
    assert failed.returncode == 1 and "line 3" in failed.stderr
    with psycopg.connect(stack.db()) as conn:
        assert conn.execute("SELECT count(*) FROM devices WHERE device_id LIKE 'ok-%%' AND tenant_id = %s",
                            (tenant,)).fetchone() == (0,)


def test_lamp_status_is_kept_and_a_re_registered_device_is_stored_under_its_new_row(stack: Stack) -> None:
    """A status-only streetlight report becomes a `lamp_status` event; after a device is deleted
    and registered again, its readings land under the new registry row (no stale cached id)."""
    tenant = stack.tenant()
    lamp = stack.device(tenant, "streetlight")
    pub = Publisher(stack, lamp)
    try:
        assert not pub.publish("up/json", orjson.dumps(
            {"ts": "2026-11-20T18:00:00Z", "status": "lampFailure"})).is_failure
        assert not pub.publish("up/json", orjson.dumps(
            {"ts": "2026-11-20T18:15:00Z", "values": {"lamp_on": 1}})).is_failure
    finally:
        pub.close()

    def events() -> list[tuple[str, dict[str, object]]]:
        with psycopg.connect(stack.db()) as conn:
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT e.event, e.attrs FROM events e JOIN devices d ON d.pk = e.device_pk "
                "WHERE d.tenant_id = %s AND d.device_id = %s", (tenant, lamp.device_id))]

    assert wait_until(lambda: events() == [("lamp_status", {"status": "lampFailure"})], timeout=30)
    assert wait_until(lambda: _count(stack.db(), tenant, lamp.device_id) == 1, timeout=30)

    with psycopg.connect(stack.db()) as conn:
        conn.execute("DELETE FROM devices WHERE tenant_id = %s AND device_id = %s", (tenant, lamp.device_id))
    again = stack.device(tenant, "streetlight", device_id=lamp.device_id)
    pub = Publisher(stack, again)
    try:
        assert not pub.publish("up/json", orjson.dumps(
            {"ts": "2026-11-21T18:15:00Z", "values": {"lamp_on": 1}})).is_failure
    finally:
        pub.close()
    assert wait_until(lambda: _count(stack.db(), tenant, again.device_id) == 1, timeout=30)
