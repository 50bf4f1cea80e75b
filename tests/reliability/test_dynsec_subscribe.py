"""On the compose broker's authentication (dynamic security only, no ACL file), a device's
SUBSCRIBE outside its own `down/#` is refused at the SUBACK (reason 135) and logged.

The embedded broker of `maillage up` keeps devices in an ACL file, which in Mosquitto 2.0 grants
every SUBSCRIBE and filters at delivery (`test_attack_matrix.py` proves nothing is delivered);
the deployment's broker (`deploy/mosquitto/mosquitto.conf`) has no ACL file, and there dynamic
security decides at subscription time. This test runs that configuration on a real Mosquitto.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from maillage.registry.devices import device_acl_commands
from maillage.registry.dynsec import DynsecClient
from maillage.stack.mosquitto import ADMIN_USER, dynsec_plugin
from maillage.stack.process import ManagedProcess, free_port, wait_for_port
from maillage.topics import device_prefix


@pytest.fixture
def compose_like_broker(tmp_path: Path) -> Iterator[tuple[int, str, Path]]:
    """Mosquitto with only the dynamic-security plugin, as deployed: (port, admin password, log)."""
    password = secrets.token_urlsafe(12)
    dynsec_file = tmp_path / "dynamic-security.json"
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(dynsec_file), ADMIN_USER, password],
                   check=True, capture_output=True)
    port, log = free_port(), tmp_path / "mosquitto.log"
    conf = tmp_path / "mosquitto.conf"
    user = "user root\n" if os.geteuid() == 0 else ""  # as the embedded broker: no drop to `mosquitto`
    conf.write_text(f"{user}per_listener_settings false\nlistener {port} 127.0.0.1\n"
                    "allow_anonymous false\n"
                    f"plugin {dynsec_plugin()}\nplugin_opt_config_file {dynsec_file}\n"
                    f"log_dest file {log}\nlog_type error\nlog_type warning\nlog_type notice\n"
                    "log_type subscribe\nlog_type debug\nconnection_messages true\n")
    proc = ManagedProcess("mosquitto-dynsec", ["mosquitto", "-c", str(conf)],
                          tmp_path / "stdout.log").start()
    try:
        wait_for_port("127.0.0.1", port, 15, proc)
        yield port, password, log
    finally:
        proc.stop()


def _suback_codes(port: int, username: str, password: str,
                  topics: list[str]) -> tuple[str, list[int]]:
    """(client id, SUBACK reason codes) of a device subscribing to `topics`."""
    cid = f"spy-{uuid.uuid4().hex[:6]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=cid)
    client.username_pw_set(username, password)
    codes: list[int] = []
    done = threading.Event()

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, rcs: list[Any], p: Any) -> None:
        codes.extend(rc.value for rc in rcs)
        done.set()

    client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert done.wait(10), "no SUBACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return cid, codes


def test_foreign_subscriptions_are_refused_with_135(
        compose_like_broker: tuple[int, str, Path]) -> None:
    port, admin_password, log = compose_like_broker
    device_password = secrets.token_urlsafe(12)
    with DynsecClient("127.0.0.1", port, ADMIN_USER, admin_password) as dyn:
        dyn.run(device_acl_commands("t1", "lamp-1", device_password), ignore=("not found",))
    own = device_prefix("t1", "lamp-1")
    foreign = [f"{device_prefix('t1', 'lamp-2')}down/#", f"{device_prefix('t2', 'lamp-1')}down/#",
               "maillage/#", f"{device_prefix('t1', 'lamp-2')}up/#", "#"]
    cid, codes = _suback_codes(port, "t1/lamp-1", device_password, [*foreign, f"{own}down/#"])
    assert codes == [135] * len(foreign) + [1], codes
    text = log.read_text(errors="replace")
    assert f"as {cid} (p5, c1, k60, u't1/lamp-1')" in text  # who: client id and username
    for topic in foreign:  # what: each subscription it asked for, and none granted
        assert f"\t{topic} (QoS 1)" in text, topic
        assert f"{cid} 1 {topic}\n" not in text, topic
    assert f"{cid} 1 {own}down/#\n" in text
