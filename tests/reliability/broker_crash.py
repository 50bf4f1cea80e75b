"""A Mosquitto SIGKILL under QoS 1 load: what the broker had acknowledged and then lost.

A subscriber with a persistent session (the gateway's account, QoS 1) is offline, so every
message the publisher gets a PUBACK for is held in the broker's store, in memory, saved to disk
every `autosave_interval` seconds. The broker is SIGKILLed, restarted on the same store, and the
subscriber comes back for its queue: what is missing was acknowledged and lost.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from maillage.registry.dynsec import DynsecClient
from maillage.stack import mosquitto
from maillage.stack.mosquitto import MqttCredentials
from maillage.stack.process import ManagedProcess

TOPIC = "maillage/crash/dev-1/up/json"
PUB_USER, PUB_PASSWORD = "crash-publisher", "crash-publisher-pw"
SUB_ID = "crash-subscriber"


@dataclass
class Outcome:
    acked_early: int
    """Acknowledged more than `autosave_interval` before the kill."""
    acked_late: int
    received_early: int
    received_late: int
    publish_rate: float


def _connect(port: int, user: str, password: str, client_id: str, clean: bool) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.username_pw_set(user, password)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    assert connected.wait(15), "no CONNACK"
    return c


def setup(port: int, creds: MqttCredentials) -> None:
    """A publisher allowed on the test topic; the subscriber's persistent session, then offline."""
    with DynsecClient("127.0.0.1", port, mosquitto.ADMIN_USER, creds.admin_password) as dyn:
        dyn.run([{"command": "createRole", "rolename": "crash-pub", "acls": [
                    {"acltype": "publishClientSend", "topic": "maillage/crash/#", "allow": True}]},
                 {"command": "createClient", "username": PUB_USER, "password": PUB_PASSWORD,
                  "roles": [{"rolename": "crash-pub"}]}], ignore=("already exists",))
    sub = _connect(port, mosquitto.GATEWAY_USER, creds.gateway_password, SUB_ID, clean=False)
    sub.subscribe("maillage/+/+/up/#", qos=1)[1]
    time.sleep(0.5)
    sub.disconnect()
    sub.loop_stop()


def publish(port: int, n: int, rate: float, tag: str) -> tuple[int, float]:
    """Publish `n` QoS 1 messages at about `rate`/s; returns (acknowledged, seconds taken)."""
    pub = _connect(port, PUB_USER, PUB_PASSWORD, f"crash-pub-{tag}", clean=True)
    acked = 0
    lock = threading.Lock()

    def on_publish(*_: object) -> None:
        nonlocal acked
        with lock:
            acked += 1

    pub.on_publish = on_publish
    t0 = time.monotonic()
    for i in range(n):
        pub.publish(TOPIC, f"{tag}-{i}".encode(), qos=1)
        ahead = t0 + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    end = time.monotonic() + 15
    while acked < n and time.monotonic() < end:
        time.sleep(0.01)
    took = time.monotonic() - t0
    pub.disconnect()
    pub.loop_stop()
    return acked, took


def drain(port: int, creds: MqttCredentials, quiet_s: float = 3.0) -> list[str]:
    """Reconnect the subscriber's session; the payloads it is given until `quiet_s` of silence."""
    got: list[str] = []
    last = [time.monotonic()]

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload.decode())
        last[0] = time.monotonic()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=SUB_ID, clean_session=False)
    c.username_pw_set(mosquitto.GATEWAY_USER, creds.gateway_password)
    c.on_message = on_message
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    last[0] = time.monotonic()
    while time.monotonic() - last[0] < quiet_s:
        time.sleep(0.1)
    c.disconnect()
    c.loop_stop()
    return got


def crash(proc: ManagedProcess) -> None:
    """SIGKILL the broker (no save on the way out)."""
    assert proc.popen is not None
    os.killpg(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(10)


def run(root: Path, port: int, *, early: int, late: int, rate: float, autosave_s: float) -> Outcome:
    """Early messages, a wait past the autosave interval, late ones, SIGKILL, restart, drain."""
    proc, creds = mosquitto.start(root, port)
    try:
        setup(port, creds)
        acked_early, _ = publish(port, early, rate, "early")
        time.sleep(autosave_s + 2)
        acked_late, took = publish(port, late, rate, "late")
        crash(proc)
    except BaseException:
        proc.stop()
        raise
    proc, creds = mosquitto.start(root, port)
    try:
        got = drain(port, creds)
    finally:
        proc.stop()
    return Outcome(acked_early, acked_late, sum(1 for g in got if g.startswith("early-")),
                   sum(1 for g in got if g.startswith("late-")), late / took if took else 0.0)
