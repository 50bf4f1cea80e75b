"""The attack matrix of issue 15 on a real `maillage up`: every attempt refused, and logged.

| attempt | refused by | logged where (who, what) |
|---|---|---|
| a device publishes under another device's prefix, same tenant and another tenant | Mosquitto (PUBACK 135) | Mosquitto's log: `Denied PUBLISH from <client id> (... '<topic>' ...)` |
| a device subscribes to another device's `down/#` or `up/#`, another tenant's, everything | Mosquitto: its ACL file grants the SUBACK but delivers nothing the device may not read | Mosquitto's log: `<client id> 1 <filter>` and the connection line naming the username |
| a token reads another tenant's data (its device id, `?tenant=`, lists) | API (404, absent from lists) | `maillage.security` line when the token names the other tenant (reason `other_tenant`); an unknown id stays a plain 404 (no oracle of what exists elsewhere) |
| a role calls an endpoint outside its role | API (403) | `maillage.security` line (reason `role`, token id, role, tenant, method, path) |
| an expired token, a revoked token, a made-up token, no token | API (401 saying which) | `maillage.security` line (reason, token id when known) |
| a care hub relays a fall for a pendant of another home | gateway (DLQ `relay_not_parent`) | `rejected` row: the hub's topic, the claimed pendant and its real relay |

Which role may call which endpoint, for every route and role, is `tests/api/test_permissions.py`
(the permission matrix); here one forbidden call per role shows the refusal is logged.
The stack's Mosquitto runs with `MAILLAGE_MQTT_LOG_DENIED=1` (`docs/reliability.md`: Mosquitto
2.0 logs denied publications only at `log_type debug`, subscriptions at `log_type subscribe`).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psycopg

from maillage.stack.mosquitto import GATEWAY_USER
from tests.e2e.conftest import Device, Publisher, Stack, wait_until


def _security_lines(stack: Stack) -> list[dict[str, Any]]:
    """The API's refusal lines so far (logs/api.log: `refused {json}`)."""
    out = []
    for line in (stack.data_dir / "logs" / "api.log").read_text(errors="replace").splitlines():
        if "maillage.security" in line and "refused {" in line:
            out.append(json.loads(line.split("refused ", 1)[1]))
    return out


def _logged(stack: Stack, **want: Any) -> bool:
    return any(all(doc.get(k) == v for k, v in want.items()) for doc in _security_lines(stack))


def _get(stack: Stack, path: str, token: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(stack.api + path, params=params, headers=headers, timeout=30)


def _token_id(stack: Stack, tenant: str, role: str) -> int:
    """The id of the tenant's (only) token of that role."""
    listed = json.loads(stack.cli("tokens", "list", "--tenant", tenant, "--json").stdout)["items"]
    (tid,) = [t["id"] for t in listed if t["role"] == role]
    return int(tid)


# -- MQTT ---------------------------------------------------------------------------------------

def _mosquitto_log(stack: Stack) -> str:
    return (stack.data_dir / "mosquitto" / "mosquitto.log").read_text(errors="replace")


class _Listener:
    """An MQTT v5 client with a device's credentials, subscribed to `topics`; keeps what arrives."""

    def __init__(self, stack: Stack, dev: Device, topics: list[str]) -> None:
        self.cid = f"attack-{dev.device_id}-{uuid.uuid4().hex[:4]}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.cid,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(dev.username, dev.password)
        self.got: list[str] = []
        self.codes: list[int] = []
        done = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])

        def on_subscribe(c: mqtt.Client, u: Any, mid: int, rcs: list[Any], p: Any) -> None:
            self.codes.extend(rc.value for rc in rcs)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.on_message = lambda c, u, m: self.got.append(m.topic)
        self.client.connect(stack.status["mqtt_host"], stack.status["mqtt_port"])
        self.client.loop_start()
        assert done.wait(10), "no SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _service_publish(stack: Stack, topics: list[str]) -> None:
    """Publish a command on each topic as the gateway's service account (allowed on down/#)."""
    creds = json.loads((stack.data_dir / "mosquitto" / "credentials.json").read_text())
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"attack-service-{uuid.uuid4().hex[:4]}")
    client.username_pw_set(GATEWAY_USER, creds["gateway_password"])
    client.connect(stack.status["mqtt_host"], stack.status["mqtt_port"])
    client.loop_start()
    try:
        for topic in topics:
            client.publish(topic, b'{"id": "x", "cmd": "on"}', qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_device_cannot_publish_or_subscribe_outside_its_own_topics(up: Stack) -> None:
    tenant, other_tenant = up.tenant(), up.tenant()
    a, b = up.device(tenant), up.device(tenant)
    c = up.device(other_tenant)
    pub = Publisher(up, a)
    cid = pub.client._client_id.decode()
    body = orjson.dumps({"ts": "2026-11-20T00:00:00Z", "values": {"active_power_w": 1.0}})
    forged = [f"{b.prefix}up/json", f"{c.prefix}up/json", f"{b.prefix}status"]
    try:
        for topic in forged:
            rc = pub.publish("", body, topic=topic)
            assert rc.is_failure and rc.value == 135, (topic, rc)
        assert not pub.publish("up/json", body).is_failure  # its own prefix still works
    finally:
        pub.close()
    for topic in forged:  # who (client id) and what (topic)
        assert wait_until(lambda t=topic: f"Denied PUBLISH from {cid} " in _mosquitto_log(up)
                          and f"'{t}'" in _mosquitto_log(up), timeout=10), topic

    # Subscriptions: Mosquitto's ACL file grants any SUBSCRIBE and applies `topic read` when it
    # delivers, so another device's commands and readings never reach the spy. Logged: who
    # (client id, and its username from the connection line) subscribed to what.
    wanted = [f"{b.prefix}down/#", f"{c.prefix}down/#", "maillage/#", f"{b.prefix}up/#"]
    spy = _Listener(up, a, [*wanted, f"{a.prefix}down/#"])
    own_b = _Listener(up, b, [f"{b.prefix}down/#"])
    try:
        _service_publish(up, [f"{b.prefix}down/cmd", f"{c.prefix}down/cmd", f"{a.prefix}down/cmd"])
        pub_b = Publisher(up, b)
        try:
            assert not pub_b.publish("up/json", orjson.dumps(
                {"ts": "2026-11-21T00:00:00Z", "values": {"active_power_w": 2.0}})).is_failure
        finally:
            pub_b.close()
        assert wait_until(lambda: own_b.got == [f"{b.prefix}down/cmd"] and bool(spy.got), timeout=10)
        time.sleep(1)  # anything else would have arrived by now
        assert set(spy.got) == {f"{a.prefix}down/cmd"}, spy.got  # its own command only
    finally:
        spy.close()
        own_b.close()
    log = _mosquitto_log(up)
    for topic in wanted:
        assert f"{spy.cid} 1 {topic}" in log, topic
    assert re.search(rf"as {re.escape(spy.cid)} \(.*u'{re.escape(a.username)}'\)", log)

    def forged_rows(dev: Device) -> tuple[int, ...] | None:  # readings at the forged time
        with psycopg.connect(up.db()) as conn:
            return conn.execute(
                "SELECT count(*) FROM readings r JOIN devices d ON d.pk = r.device_pk WHERE "
                "d.tenant_id = %s AND d.device_id = %s AND r.ts = '2026-11-20T00:00:00Z'",
                (dev.tenant, dev.device_id)).fetchone()

    assert wait_until(lambda: forged_rows(a) == (1,), timeout=30)  # its own, through the pipeline
    assert forged_rows(b) == (0,) and forged_rows(c) == (0,)


def test_a_hub_relaying_for_another_homes_pendant_is_dead_lettered_with_both_names(up: Stack) -> None:
    tenant = up.tenant()
    hub_a, hub_b = up.device(tenant, "care_hub"), up.device(tenant, "care_hub")
    pendant_b = json.loads(up.cli("devices", "add", "--tenant", tenant, "--id", f"p{uuid.uuid4().hex[:8]}",
                                  "--type", "care_button", "--meta", f"hub={hub_b.device_id}",
                                  "--json").stdout)["device_id"]
    pub = Publisher(up, hub_a)
    doc = {"ts": "2026-11-20T21:59:00Z", "event": "fall_detected", "sensor": pendant_b}
    try:
        assert not pub.publish("up/event", orjson.dumps(doc)).is_failure
    finally:
        pub.close()

    def rows() -> list[tuple[str, str | None, str, str, bytes]]:
        with psycopg.connect(up.db()) as conn:
            return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in conn.execute(
                "SELECT mqtt_topic, device_id, reason, detail, payload FROM rejected "
                "WHERE tenant_id = %s", (tenant,))]

    assert wait_until(lambda: len(rows()) == 1, timeout=30)
    ((topic, device, reason, detail, payload),) = rows()
    assert reason == "relay_not_parent"
    assert topic == f"{hub_a.prefix}up/event" and device == hub_a.device_id  # who
    assert pendant_b in detail and hub_b.device_id in detail  # what it claimed, and the truth
    assert orjson.loads(payload) == doc
    with psycopg.connect(up.db()) as conn:
        assert conn.execute("SELECT count(*) FROM anomalies WHERE tenant_id = %s",
                            (tenant,)).fetchone() == (0,)


# -- API ----------------------------------------------------------------------------------------

def test_a_token_cannot_read_another_tenant_and_the_attempt_is_logged(up: Stack) -> None:
    ta, tb = up.tenant(), up.tenant()
    dev_b = up.device(tb)
    token_a = up.token(ta, "admin")
    assert _get(up, f"/v1/devices/{dev_b.device_id}", token_a).status_code == 404
    assert _get(up, f"/v1/devices/{dev_b.device_id}/readings", token_a).status_code == 404
    assert dev_b.device_id not in [d["device_id"] for d in _get(up, "/v1/devices", token_a).json()["items"]]
    listed = _get(up, "/v1/devices", token_a, tenant=tb).json()["items"]  # its own tenant's list
    assert dev_b.device_id not in [d["device_id"] for d in listed]
    path = f"/v1/devices/{dev_b.device_id}"
    r = _get(up, path, token_a, tenant=tb)
    assert r.status_code == 404, r.text
    tid = _token_id(up, ta, "admin")
    assert wait_until(lambda: _logged(up, status=404, reason="other_tenant", token_id=tid, role="admin",
                                      tenant=ta, method="GET", path=path), timeout=10)


def test_forbidden_roles_expired_revoked_and_unknown_tokens_are_refused_and_logged(up: Stack) -> None:
    tenant = up.tenant()
    # A role outside an endpoint (every route x role: tests/api/test_permissions.py).
    opendata = up.token(tenant, "opendata")
    r = _get(up, "/v1/alerts", opendata)
    assert r.status_code == 403, r.text
    tid = _token_id(up, tenant, "opendata")
    assert wait_until(lambda: _logged(up, status=403, reason="role", token_id=tid, role="opendata",
                                      tenant=tenant, method="GET", path="/v1/alerts"), timeout=10)
    r = _get(up, "/v1/alerts/stream", opendata)  # a 403 the route raises itself
    assert r.status_code == 403, r.text
    assert wait_until(lambda: _logged(up, status=403, reason="refused", token_id=tid, role="opendata",
                                      path="/v1/alerts/stream"), timeout=10)

    # Revoked, expired, unknown, none.
    revoked = up.token(tenant, "admin")
    rid = _token_id(up, tenant, "admin")
    up.cli("tokens", "revoke", str(rid))
    expired = up.token(tenant, "energy_manager")
    eid = _token_id(up, tenant, "energy_manager")
    with psycopg.connect(up.db(), autocommit=True) as conn:
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = %s",
                     (eid,))
    for token, reason, token_id in ((revoked, "token_revoked", rid), (expired, "token_expired", eid),
                                    ("made-up-token", "invalid_token", None),
                                    (None, "missing_token", None)):
        resp = _get(up, "/v1/devices", token)
        assert resp.status_code == 401, (reason, resp.text)
        assert resp.json()["error"]["message"]
        want: dict[str, Any] = {"status": 401, "reason": reason, "method": "GET", "path": "/v1/devices"}
        if token_id is not None:
            want["token_id"] = token_id
        assert wait_until(lambda w=want: _logged(up, **w), timeout=10), want
    assert all("client" in doc and "message" in doc for doc in _security_lines(up))

