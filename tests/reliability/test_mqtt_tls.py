"""Hole 11: MQTT over TLS. On dc046fb there was no `maillage broker tls` (the command failed) and
no TLS listener option in `mosquitto.start`.

Certificates come from the command itself; the broker is a real Mosquitto with a TLS listener;
clients are real paho clients: one trusting the CA connects and receives, one that does not trust
it and one speaking plain MQTT to the TLS port are refused.
"""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from maillage.stack import mosquitto
from maillage.stack.process import free_port

pytest.importorskip("cryptography", reason="certificate generation needs the cryptography package")


def _client(port: int, password: str, ca: Path | None, tls: bool = True) -> tuple[mqtt.Client, int]:
    """Connect as the gateway's account; returns the client and its CONNACK code (-1: none)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tls-test-{os.getpid()}-{ca}")
    c.username_pw_set(mosquitto.GATEWAY_USER, password)
    if tls:
        c.tls_set(ca_certs=str(ca) if ca else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    done = threading.Event()
    result = {"rc": -1}

    def on_connect(client, userdata, flags, rc, props=None):  # type: ignore[no-untyped-def]
        result["rc"] = rc.value if hasattr(rc, "value") else int(rc)
        done.set()

    c.on_connect = on_connect
    try:
        c.connect("localhost", port, keepalive=30)
    except (ssl.SSLError, OSError):
        return c, -1
    c.loop_start()
    done.wait(10)
    return c, result["rc"]


def test_tls_listener_with_generated_certificates(tmp_path: Path) -> None:
    root = tmp_path / "broker"
    root.mkdir()
    root.chmod(0o755)
    certs = tmp_path / "certs"
    done = subprocess.run([sys.executable, "-m", "maillage", "broker", "tls", "--out", str(certs),
                           "--host", "localhost", "--host", "127.0.0.1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((certs / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((certs / "ca.key").stat().st_mode) == 0o600
    port, tls_port = free_port(), free_port()
    proc, creds = mosquitto.start(root, port, tls_port=tls_port, tls_dir=certs)
    try:
        good, rc = _client(tls_port, creds.gateway_password, certs / "ca.crt")
        assert rc == 0
        got = threading.Event()
        good.on_message = lambda c, u, m: got.set()
        good.subscribe("$SYS/broker/uptime", qos=1)
        assert got.wait(15)  # data flows over the TLS connection
        good.disconnect()
        good.loop_stop()
        # Not trusting our CA (system roots only): the handshake fails.
        untrusting, rc = _client(tls_port, creds.gateway_password, None)
        assert rc != 0
        untrusting.loop_stop()
        # Plain MQTT to the TLS port: no CONNACK.
        plain, rc = _client(tls_port, creds.gateway_password, None, tls=False)
        assert rc != 0
        plain.loop_stop()
    finally:
        proc.stop()
