"""Late, out-of-order and duplicate readings; unknown devices; registry changes seen live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from maillage.ingest.gateway import Gateway, GatewayConfig, Inbound
from maillage.topics import DLQ, READINGS
from tests.ingest_e2e.ingest_e2e_helpers import IngestStack, Publisher, utc, wait_until


def _json(ts: datetime, **values: float) -> bytes:
    return orjson.dumps({"ts": ts.isoformat().replace("+00:00", "Z"), "values": values})


def test_late_out_of_order_and_duplicate_readings(stack: IngestStack) -> None:
    """Every reading lands at its measurement time; for a (metric, time) already stored the first
    value received wins, later ones are ignored (ON CONFLICT DO NOTHING)."""
    tenant = stack.new_tenant()
    (dev,) = stack.register(tenant, [("m-order", "meter")])
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t2, t3 = now - timedelta(minutes=30), now - timedelta(minutes=20), now - timedelta(minutes=10)
    late = now - timedelta(days=3)  # a meter back after three days offline
    pub = Publisher(stack, dev)
    try:
        for payload in (_json(t3, active_power_w=300), _json(t1, active_power_w=100),
                        _json(late, active_power_w=5)):
            assert not pub.publish("up/json", payload).is_failure
        assert wait_until(lambda: len(stack.readings(tenant, "m-order")) == 3)
        # Same times again with other values, plus one new time: only t2 is new.
        for payload in (_json(t1, active_power_w=111), _json(t2, active_power_w=200),
                        _json(late, active_power_w=55)):
            assert not pub.publish("up/json", payload).is_failure
        # The same message twice (a device retrying): stored once.
        assert not pub.publish("up/json", _json(t2, active_power_w=222)).is_failure
    finally:
        pub.close()
    assert wait_until(lambda: len(stack.readings(tenant, "m-order")) == 4)
    rows = stack.readings(tenant, "m-order")
    assert [(m, ts, v) for m, ts, v, _ in rows] == [
        ("active_power_w", late, 5.0), ("active_power_w", t1, 100.0),
        ("active_power_w", t2, 200.0), ("active_power_w", t3, 300.0)]
    assert all(rx > ts for _, ts, _, rx in rows)  # receive time kept apart from measurement time
    assert stack.rejected(tenant) == []


def test_gateway_handle_rejects_an_unregistered_device(stack: IngestStack) -> None:
    """`Gateway.handle` against the real registry: a topic of no registered device is `unknown_device`."""
    tenant = stack.new_tenant()
    stack.register(tenant, [("known-1", "meter")])
    config = GatewayConfig(mqtt_host="127.0.0.1", mqtt_port=1, mqtt_username="-", mqtt_password="-",
                           kafka_bootstrap="-", database_url=stack.db())
    gw = Gateway(config)
    try:
        payload = _json(utc(2026, 11, 20), active_power_w=1)
        now = datetime.now(UTC).timestamp()
        out = gw.handle(Inbound(f"maillage/{tenant}/ghost-7/up/json", payload, 1, 1, now))
        assert [(topic, key) for topic, key, _ in out] == [(DLQ, f"{tenant}/ghost-7".encode())]
        record = orjson.loads(out[0][2])
        assert (record["reason"], record["tenant"], record["device_id"]) == (
            "unknown_device", tenant, "ghost-7")
        assert "ghost-7" in record["detail"]
        ok = gw.handle(Inbound(f"maillage/{tenant}/known-1/up/json", payload, 2, 1, now))
        assert [topic for topic, _, _ in ok] == [READINGS]
        bad_topic = gw.handle(Inbound("elsewhere/x", payload, 3, 1, now))
        assert orjson.loads(bad_topic[0][2])["reason"] == "unknown_topic"
    finally:
        gw.registry.close()


def test_device_removed_from_registry_is_rejected_then_replayed(stack: IngestStack) -> None:
    """A device whose row is deleted while both gateways have it cached (its broker credentials
    still valid) is rejected as `unknown_device` without restarting them; once registered again,
    `maillage dlq replay` stores what it sent in between, at its original receive time."""
    tenant = stack.new_tenant()
    (dev,) = stack.register(tenant, [("m-gone", "meter")])
    base = utc(2026, 11, 21, 8)
    pub = Publisher(stack, dev)
    try:
        # Two rejected messages (one per gateway of the shared subscription, round robin) make
        # both gateways cache the device, while storage never looks it up.
        for _ in range(2):
            assert not pub.publish("up/json", b"{oops").is_failure
        assert wait_until(lambda: len(stack.rejected(tenant, "m-gone")) == 2)
        with psycopg.connect(stack.db(), autocommit=True) as conn:
            conn.execute("DELETE FROM rejected WHERE tenant_id = %s", (tenant,))
            conn.execute("DELETE FROM devices WHERE tenant_id = %s AND device_id = %s",
                         (tenant, "m-gone"))
        sent: list[bytes] = []

        def publish_until_rejected() -> bool:
            payload = _json(base + timedelta(minutes=len(sent) + 1), active_power_w=2)
            sent.append(payload)
            assert not pub.publish("up/json", payload).is_failure
            return bool(stack.rejected(tenant, "m-gone"))

        # The gateways learn of the deletion through NOTIFY; a message racing with it may still
        # pass (storage then drops it: the device is gone), hence "until". Without the
        # notification the cached device would be accepted for as long as the gateways run.
        assert wait_until(publish_until_rejected, timeout=30, interval=0.3)
        last = _json(base + timedelta(hours=1), active_power_w=3)
        assert not pub.publish("up/json", last).is_failure
        assert wait_until(lambda: any(p == last for _, _, _, p in stack.rejected(tenant, "m-gone")))
        rejected = stack.rejected(tenant, "m-gone")
        assert {r for _, r, _, _ in rejected} == {"unknown_device"}
        assert all(f"{tenant}/m-gone" in detail for _, _, detail, _ in rejected)

        # `maillage dlq list`: the same rows, newest first, payloads as text.
        listed = orjson.loads(stack.cli("dlq", "list", "--tenant", tenant, "--device", "m-gone")
                              .stdout)["items"]
        assert [i["id"] for i in listed] == sorted((i["id"] for i in listed), reverse=True)
        assert {i["reason"] for i in listed} == {"unknown_device"}
        assert sorted(i["payload"].encode() for i in listed) == sorted(p for _, _, _, p in rejected)

        stack.register(tenant, [("m-gone", "meter")])  # registered again (new credentials)
        replay = stack.cli("dlq", "replay", "--tenant", tenant, "--device", "m-gone")
        report = orjson.loads(replay.stdout)
        assert report["replayed"] == report["selected"] == len(rejected)
        assert report["still_rejected"] == 0
    finally:
        pub.close()
    assert wait_until(lambda: len(stack.readings(tenant, "m-gone")) == len(rejected))
    replayed = {p for _, _, _, p in rejected}
    assert {_json(ts, active_power_w=int(v)) for _, ts, v, _ in stack.readings(tenant, "m-gone")} == replayed
    with psycopg.connect(stack.db()) as conn:
        rows = conn.execute("SELECT received_at, replayed_at FROM rejected WHERE tenant_id = %s",
                            (tenant,)).fetchall()
    assert rows and all(replayed_at is not None and replayed_at > rx for rx, replayed_at in rows)
    # Stored with the original receive time, not the replay's.
    assert {rx for _, _, _, rx in stack.readings(tenant, "m-gone")} == {rx for rx, _ in rows}
    again = orjson.loads(stack.cli("dlq", "replay", "--tenant", tenant).stdout)
    assert again["selected"] == 0  # replayed rows are not replayed twice by default


def test_replay_fixes_before_device_and_reports_what_is_still_bad(stack: IngestStack) -> None:
    """An installation date set too late rejects history (`before_device`); after correcting it,
    replay stores it. A frame with a bad checksum stays in the DLQ and is reported."""
    from maillage.registry.models import DeviceSpec

    tenant = stack.new_tenant()
    (dev,) = stack.register(tenant, [DeviceSpec(device_id="m-hist", type="meter",
                                                installed_at=utc(2026, 11, 1))])
    early = utc(2026, 10, 15, 12)
    pub = Publisher(stack, dev)
    try:
        assert not pub.publish("up/json", _json(early, energy_import_wh=1000)).is_failure
        assert not pub.publish("up/tic", b"\nBASE 000001000 X\r").is_failure
    finally:
        pub.close()
    assert wait_until(lambda: len(stack.rejected(tenant)) == 2)
    assert sorted(r for _, r, _, _ in stack.rejected(tenant)) == ["bad_checksum", "before_device"]
    with psycopg.connect(stack.db(), autocommit=True) as conn:
        conn.execute("UPDATE devices SET installed_at = '2026-10-01T00:00:00Z' WHERE tenant_id = %s",
                     (tenant,))
    report = orjson.loads(stack.cli("dlq", "replay", "--tenant", tenant).stdout)
    assert (report["selected"], report["replayed"], report["still_rejected"]) == (2, 1, 1)
    assert report["still_rejected_by_reason"] == {"bad_checksum": 1}
    assert report["still_rejected_items"][0]["was"] == "bad_checksum"
    assert wait_until(lambda: len(stack.readings(tenant, "m-hist")) == 1)
    assert [(m, ts, v) for m, ts, v, _ in stack.readings(tenant, "m-hist")] == [
        ("energy_import_wh", early, 1000.0)]
    listed = orjson.loads(stack.cli("dlq", "list", "--tenant", tenant, "--reason",
                                    "bad_checksum").stdout)["items"]
    assert [(i["reason"], i["replayed_at"], i["payload"]) for i in listed] == [
        ("bad_checksum", None, "\nBASE 000001000 X\r")]
