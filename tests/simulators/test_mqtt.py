"""The simulator registers its devices and publishes over the real broker with their credentials."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import typer
from typer.testing import CliRunner

from maillage.simulators.cli import simulate
from maillage.stack.mosquitto import GATEWAY_USER


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("simulate")(simulate)
    app.command("noop")(lambda: None)
    return app


def test_meters_register_and_publish(services, db_url: str, stack_dir: Path,  # type: ignore[no-untyped-def]
                                     tenant_id: str) -> None:
    """`simulate --meters 5` creates the tenant and five meters, each publishing readings."""
    got: dict[str, list[bytes]] = {}
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{tenant_id}",
                      protocol=mqtt.MQTTv311)
    sub.username_pw_set(GATEWAY_USER, services.mqtt_creds.gateway_password)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.setdefault(m.topic, []).append(m.payload)
    sub.connect("127.0.0.1", services.mqtt_port)
    sub.subscribe(f"maillage/{tenant_id}/+/up/#", qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        result = CliRunner().invoke(_app(), [
            "simulate", "--meters", "5", "--tenant", tenant_id, "--duration", "4", "--seed", "3",
            "--data-dir", str(stack_dir)])
        assert result.exit_code == 0, result.output
    finally:
        sub.loop_stop()
        sub.disconnect()
    with psycopg.connect(db_url) as conn:
        n = conn.execute("SELECT count(*) FROM devices WHERE tenant_id = %s AND type = 'meter'",
                         (tenant_id,)).fetchone()
    assert n is not None and n[0] == 5
    devices = {t.split("/")[2] for t in got}
    assert len(devices) == 5, result.output
    summary = orjson.loads(result.stdout[result.stdout.index("{"):])
    assert summary["errors"] == 0 and summary["acknowledged"] >= 5
