"""`maillage broker init/accounts`: setting up a broker maillage does not run (docker-compose)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from maillage.stack.mosquitto import ADMIN_USER, GATEWAY_USER


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maillage", "broker", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)


def test_init_writes_the_admin_account_once(tmp_path: Path) -> None:
    env = {"MAILLAGE_MQTT_URL": "mqtt://boss:s3cret@127.0.0.1:1", "MAILLAGE_DATA_DIR": str(tmp_path)}
    target = tmp_path / "data" / "dynamic-security.json"
    done = _cli("init", str(target), env=env)
    assert done.returncode == 0, done.stderr
    clients = {c["username"] for c in json.loads(target.read_text())["clients"]}
    assert clients == {"boss"}
    before = target.read_text()
    again = _cli("init", str(target), env={**env, "MAILLAGE_MQTT_URL": "mqtt://other:x@h:1"})
    assert again.returncode == 0 and "left as it is" in again.stdout
    assert target.read_text() == before


def test_accounts_creates_or_updates_the_gateway_client(services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Idempotent against the real broker: run twice, the gateway can still log in."""
    from maillage.mqtt import MqttConnection

    env = {"MAILLAGE_MQTT_URL": f"mqtt://{ADMIN_USER}:{services.mqtt_creds.admin_password}"
                                f"@127.0.0.1:{services.mqtt_port}",
           "MAILLAGE_MQTT_GATEWAY_PASSWORD": services.mqtt_creds.gateway_password,
           "MAILLAGE_DATA_DIR": str(tmp_path)}
    for _ in range(2):
        done = _cli("accounts", "--wait", "10", env=env)
        assert done.returncode == 0, done.stderr
        assert "ready" in done.stdout

    import asyncio

    async def login() -> None:
        conn, _ = await MqttConnection.connect("127.0.0.1", services.mqtt_port, "t-gw-login",
                                               username=GATEWAY_USER,
                                               password=services.mqtt_creds.gateway_password)
        await conn.disconnect()

    asyncio.run(login())


def test_accounts_explains_missing_settings(tmp_path: Path) -> None:
    done = _cli("accounts", env={"MAILLAGE_DATA_DIR": str(tmp_path), "MAILLAGE_MQTT_URL": "",
                                 "MAILLAGE_MQTT_GATEWAY_PASSWORD": ""})
    assert done.returncode != 0
    assert "MAILLAGE_MQTT_URL is not set" in done.stderr
