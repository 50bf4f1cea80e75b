"""Care hubs relaying for sensors, online/offline status with a real last will, the DLQ API."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap

import orjson
import psycopg

from maillage.registry.models import DeviceSpec, DeviceType
from tests.ingest_e2e.ingest_e2e_helpers import IngestStack, Publisher, utc, wait_until

T0 = int(utc(2026, 11, 20, 22).timestamp())


def test_care_hub_messages_are_stored_under_the_relayed_sensors(stack: IngestStack) -> None:
    """Events and SenML records naming a registered sensor go to that sensor (with the hub kept);
    an unregistered sensor rejects the message as `unknown_device`, naming it."""
    tenant = stack.new_tenant()
    under_hub = {"hub": "hub-1"}  # a hub speaks only for the sensors registered under it
    hub, _, _, motion = stack.register(tenant, [
        ("hub-1", "care_hub"),
        DeviceSpec(device_id="door-1", type=DeviceType.CARE_DOOR, meta=under_hub),
        DeviceSpec(device_id="env-1", type=DeviceType.CARE_ENV, meta=under_hub),
        ("pir-9", "care_motion")])
    pub = Publisher(stack, hub)
    try:
        for payload in (
            {"ts": "2026-11-20T22:00:00Z", "event": "door_open", "sensor": "door-1"},
            {"ts": "2026-11-20T22:05:00Z", "event": "battery_low", "device": "env-1",
             "values": {"battery_pct": 9}},
            {"ts": "2026-11-20T22:06:00Z", "event": "tamper"},  # the hub's own event
        ):
            assert not pub.publish("up/event", orjson.dumps(payload)).is_failure
        pack = [{"bn": "hub-1/door-1/", "bt": T0, "n": "door", "vb": True},
                {"bn": "hub-1/env-1/", "n": "temperature", "u": "Cel", "v": 19.5},
                {"n": "humidity", "u": "%RH", "v": 55}]
        assert not pub.publish("up/senml", orjson.dumps(pack)).is_failure
        unknown = orjson.dumps({"event": "fall_detected", "sensor": "pendant-404"})
        assert not pub.publish("up/event", unknown).is_failure
        half_known = orjson.dumps([{"bn": "hub-1/env-1/", "bt": T0, "n": "temp", "u": "Cel", "v": 20},
                                   {"bn": "hub-1/bedroom-2/", "n": "bed", "vb": True}])
        assert not pub.publish("up/senml", half_known).is_failure
    finally:
        pub.close()
    # A device that is not a hub cannot speak for another one.
    spoof = orjson.dumps({"ts": "2026-11-20T22:00:00Z", "event": "door_open", "sensor": "door-1"})
    other = Publisher(stack, motion)
    try:
        assert not other.publish("up/event", spoof).is_failure
    finally:
        other.close()

    at = utc(2026, 11, 20, 22)
    assert wait_until(lambda: len(stack.events(tenant, "door-1")) == 1)
    ts, event, attrs = stack.events(tenant, "door-1")[0]
    assert (ts, event, attrs) == (at, "door_open", {"hub": "hub-1"})
    assert wait_until(lambda: len(stack.events(tenant, "env-1")) == 1)
    assert [(e, a["hub"], a["values"]) for _, e, a in stack.events(tenant, "env-1")] == [
        ("battery_low", "hub-1", {"battery_pct": 9.0})]
    assert wait_until(lambda: len(stack.events(tenant, "hub-1")) == 1)
    assert [e for _, e, _ in stack.events(tenant, "hub-1")] == ["tamper"]
    assert wait_until(lambda: len(stack.readings(tenant, "env-1")) == 2)
    assert [(m, ts, v) for m, ts, v, _ in stack.readings(tenant, "door-1")] == [("door_open", at, 1.0)]
    assert [(m, ts, v) for m, ts, v, _ in stack.readings(tenant, "env-1")] == [
        ("humidity_pct", at, 55.0), ("temperature_c", at, 19.5)]
    assert stack.readings(tenant, "hub-1") == []

    assert wait_until(lambda: len(stack.rejected(tenant)) == 3)
    got = sorted((d, r, detail) for d, r, detail, _ in stack.rejected(tenant))
    assert [(d, r) for d, r, _ in got] == [("hub-1", "unknown_device"), ("hub-1", "unknown_device"),
                                           ("pir-9", "invalid_schema")]
    assert sorted("pendant-404" in detail or "bedroom-2" in detail for _, _, detail in got[:2]) == [
        True, True]
    assert "only care_hub and lighting_cabinet relay" in got[2][2]
    # All or nothing: the known sensor of the half-known pack got nothing at 20 °C.
    assert 20.0 not in [v for _, _, v, _ in stack.readings(tenant, "env-1")]


_DEVICE = textwrap.dedent("""
    import sys, time, paho.mqtt.client as mqtt
    host, port, user, password, prefix = sys.argv[1:6]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lwt-" + user.replace("/", "-"))
    c.username_pw_set(user, password)
    c.will_set(prefix + "status", "offline", qos=1, retain=True)
    c.connect(host, int(port), keepalive=30)
    c.loop_start()
    c.publish(prefix + "status", "online", qos=1, retain=True).wait_for_publish(10)
    print("online", flush=True)
    time.sleep(600)
""")


def _status(stack: IngestStack, tenant: str, device_id: str) -> str:
    with psycopg.connect(stack.db()) as conn:
        row = conn.execute("SELECT status FROM devices WHERE tenant_id = %s AND device_id = %s",
                           (tenant, device_id)).fetchone()
    assert row is not None
    return str(row[0])


def test_status_online_then_offline_by_last_will(stack: IngestStack) -> None:
    """`online` published retained; the process killed with SIGKILL: the broker publishes the
    will, and the device is `offline` in the registry and the API."""
    tenant = stack.new_tenant()
    (dev,) = stack.register(tenant, [("sl-lwt", "streetlight")])
    assert _status(stack, tenant, "sl-lwt") == "unknown"
    proc = subprocess.Popen(
        [sys.executable, "-c", _DEVICE, stack.status["mqtt_host"], str(stack.status["mqtt_port"]),
         dev.username, dev.password, dev.prefix], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "online"
        assert wait_until(lambda: _status(stack, tenant, "sl-lwt") == "online")
    finally:
        proc.kill()  # abrupt: no DISCONNECT, the broker sends the will
        proc.wait(10)
    assert wait_until(lambda: _status(stack, tenant, "sl-lwt") == "offline")
    token = stack.new_token(tenant, "energy_manager")
    body = stack.get("/v1/devices/sl-lwt/status", token).json()
    assert body["status"] == "offline"
    pub = Publisher(stack, dev)
    try:
        assert not pub.publish("status", b"sleeping").is_failure
    finally:
        pub.close()
    assert wait_until(lambda: [r for _, r, _, _ in stack.rejected(tenant)] == ["invalid_schema"])
    assert _status(stack, tenant, "sl-lwt") == "offline"


def test_rejected_messages_api_filters_scopes_and_pages(stack: IngestStack) -> None:
    """`GET /v1/rejected`: tenant- and role-scoped, filters by device, reason and time, pages,
    shows payloads as text when UTF-8 and base64 otherwise."""
    tenant, other = stack.new_tenant(), stack.new_tenant()
    meter, care = stack.register(tenant, [("m-dlq", "meter"), ("bed-dlq", "care_bed")])
    (foreign,) = stack.register(other, [("m-other", "meter")])
    binary = bytes([0xFF, 0x00, 0x81]) + b"garbage"
    for dev, payloads in ((meter, [b"{bad json", binary, b"[]", b"{also bad"]),
                          (care, [b"not senml"]), (foreign, [b"{x"])):
        pub = Publisher(stack, dev)
        try:
            for payload in payloads:
                channel = "up/senml" if dev is care else "up/json"
                assert not pub.publish(channel, payload).is_failure
        finally:
            pub.close()
    assert wait_until(lambda: len(stack.rejected(tenant)) == 5 and len(stack.rejected(other)) == 1)

    admin = stack.new_token(tenant, "admin")
    items = stack.get("/v1/rejected", admin).json()["items"]
    assert len(items) == 5 and {i["tenant"] for i in items} == {tenant}
    assert [i["id"] for i in items] == sorted((i["id"] for i in items), reverse=True)  # newest first
    by_payload = {i["payload"]: i for i in items}
    raw = by_payload[base64.b64encode(binary).decode()]
    assert (raw["payload_encoding"], raw["reason"], raw["size"]) == ("base64", "malformed", 10)
    text = by_payload["{bad json"]
    assert (text["payload_encoding"], text["device_id"], text["topic"]) == (
        "utf-8", "m-dlq", f"maillage/{tenant}/m-dlq/up/json")
    assert text["detail"] and text["received_at"]

    only_schema = stack.get("/v1/rejected", admin, reason="invalid_schema").json()["items"]
    assert [(i["device_id"], i["payload"]) for i in only_schema] == [("m-dlq", "[]")]
    assert {i["device_id"] for i in stack.get("/v1/rejected", admin, device="bed-dlq").json()["items"]} == {
        "bed-dlq"}
    first = min(i["received_at"] for i in items)
    assert stack.get("/v1/rejected", admin, **{"from": "2099-01-01T00:00:00Z"}).json()["items"] == []
    assert len(stack.get("/v1/rejected", admin, **{"from": first}).json()["items"]) == 5
    assert stack.get("/v1/rejected", admin, **{"from": "2026-01-01T00:00:00"}).status_code == 422

    pages, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        body = stack.get("/v1/rejected", admin, **params).json()
        pages.append([i["id"] for i in body["items"]])
        after = body["next"]
        if after is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == [i["id"] for i in items]

    energy = stack.new_token(tenant, "energy_manager")
    assert {i["device_id"] for i in stack.get("/v1/rejected", energy).json()["items"]} == {"m-dlq"}
    care_token = stack.new_token(tenant, "care_coordinator")
    assert {i["device_id"] for i in stack.get("/v1/rejected", care_token).json()["items"]} == {"bed-dlq"}
    with psycopg.connect(stack.db()) as conn:
        logged = conn.execute("SELECT what FROM care_access_log WHERE tenant_id = %s",
                              (tenant,)).fetchall()
    assert ("rejected messages",) in logged
    assert stack.get("/v1/rejected", stack.new_token(tenant, "opendata")).status_code == 403
    assert stack.get("/v1/rejected", admin, tenant=other).json()["items"] == []
    assert [i["device_id"] for i in stack.get("/v1/rejected", stack.new_token(other)).json()["items"]] == [
        "m-other"]
    assert stack.get("/v1/rejected", "nope").status_code == 401
