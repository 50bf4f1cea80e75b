"""Several gateways on Mosquitto's shared subscription: N in, N stored, none twice, none lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg

from maillage.stack.mosquitto import GATEWAY_USER
from maillage.topics import READINGS
from tests.ingest_e2e.ingest_e2e_helpers import (
    IngestStack,
    KafkaTap,
    Publisher,
    messages_handled,
    utc,
    wait_until,
)

START = utc(2026, 11, 22)


def _publish(stack: IngestStack, devices: list, per_device: int, offset: int = 0) -> None:  # type: ignore[type-arg]
    """Each device publishes `per_device` readings, all devices at once."""

    def run(dev: object) -> None:
        pub = Publisher(stack, dev)  # type: ignore[arg-type]
        try:
            for i in range(offset, offset + per_device):
                ts = (START + timedelta(minutes=i)).isoformat().replace("+00:00", "Z")
                rc = pub.publish("up/json", orjson.dumps({"ts": ts, "seq": i,
                                                          "values": {"active_power_w": float(i)}}))
                assert not rc.is_failure
        finally:
            pub.close()

    threads = [threading.Thread(target=run, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def _stored(stack: IngestStack, tenant: str) -> int:
    with psycopg.connect(stack.db()) as conn:
        row = conn.execute("SELECT count(*) FROM readings r JOIN devices d ON d.pk = r.device_pk "
                           "WHERE d.tenant_id = %s", (tenant,)).fetchone()
    return int(row[0]) if row else 0


def test_two_gateways_share_the_load_and_store_each_message_once(stack: IngestStack) -> None:
    """400 messages from 4 devices: both gateways take a share, Kafka gets 400 records, 400 rows."""
    gateways = {n: p for n, p in stack.pids().items() if n.startswith("gateway-")}
    assert sorted(gateways) == ["gateway-0", "gateway-1"]
    before = {n: messages_handled(stack, p) for n, p in gateways.items()}
    tenant = stack.new_tenant()
    devices = stack.register(tenant, [(f"m-share-{i}", "meter") for i in range(4)])
    with KafkaTap(stack.status["kafka_bootstrap"]) as tap:
        _publish(stack, devices, 100)
        assert wait_until(lambda: _stored(stack, tenant) >= 400, timeout=60)
        assert wait_until(lambda: sum(len(tap.of(tenant, d.device_id)) for d in devices) >= 400)
        produced = [rec for d in devices for rec in tap.of(tenant, d.device_id)]
    assert _stored(stack, tenant) == 400
    assert len(produced) == 400 and {topic for topic, _ in produced} == {READINGS}
    keys = [(v["device_id"], v["seq"]) for v in (orjson.loads(raw) for _, raw in produced)]
    assert len(set(keys)) == 400  # no message produced twice
    shares = {n: messages_handled(stack, p) - before[n] for n, p in gateways.items()}
    assert sum(shares.values()) == 400
    assert all(share > 0 for share in shares.values()), shares  # both gateways took part
    assert stack.rejected(tenant) == []


def test_messages_queued_for_a_stopped_gateway_are_delivered_when_it_returns(stack: IngestStack) -> None:
    """Mosquitto 2.0 round-robins a shared subscription over every member with a persistent
    session, connected or not: a stopped gateway's share waits for it (not lost, not taken over)."""
    env = dict(os.environ, MAILLAGE_DATA_DIR=str(stack.data_dir),
               PROMETHEUS_MULTIPROC_DIR=str(stack.data_dir / "prometheus"))
    env.pop("MAILLAGE_DATABASE_URL", None)
    argv = [sys.executable, "-m", "maillage", "gateway", "--instance", "7"]
    log = stack.data_dir / "logs" / "gateway-7-test.log"

    def start() -> subprocess.Popen[bytes]:
        connects = log.read_text().count("connected to MQTT") if log.exists() else 0
        proc = subprocess.Popen(argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        assert wait_until(lambda: log.read_text().count("connected to MQTT") > connects, timeout=30)
        return proc

    tenant = stack.new_tenant()
    devices = stack.register(tenant, [(f"m-queue-{i}", "meter") for i in range(3)])
    extra = start()
    try:
        extra.send_signal(signal.SIGTERM)  # a clean stop: its session (and subscription) stays
        assert extra.wait(30) == 0
        _publish(stack, devices, 30)
        # Gateways 0 and 1 store their share; the rest waits in gateway 7's session.
        assert wait_until(lambda: _stored(stack, tenant) >= 30, timeout=30)
        extra = start()
        assert wait_until(lambda: _stored(stack, tenant) == 90, timeout=60)
        assert messages_handled(stack, extra.pid) > 0  # it got its queue, published before it came back
    finally:
        extra.send_signal(signal.SIGTERM)
        extra.wait(30)
        _forget_session(stack, "maillage-gateway-7")
    # Its membership is gone with its session: the two gateways of the stack take everything again.
    _publish(stack, devices, 10, offset=30)
    assert wait_until(lambda: _stored(stack, tenant) == 120, timeout=30)
    assert stack.rejected(tenant) == []


def _forget_session(stack: IngestStack, client_id: str) -> None:
    """Connect once with a clean session, so the broker drops the test gateway's membership."""
    password = json.loads((stack.data_dir / "mosquitto" / "credentials.json").read_text())[
        "gateway_password"]
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311, clean_session=True)
    client.username_pw_set(GATEWAY_USER, password)
    client.on_connect = lambda *a: done.set()
    client.connect(stack.status["mqtt_host"], stack.status["mqtt_port"])
    client.loop_start()
    assert done.wait(10)
    client.disconnect()
    client.loop_stop()
