"""The simulator registers its devices and publishes over the real broker with their credentials."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import typer
from typer.testing import CliRunner

from maillage.cli.simulate import simulate
from maillage.registry.dynsec import DynsecClient
from maillage.stack.mosquitto import ADMIN_USER, GATEWAY_USER


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("simulate")(simulate)
    app.command("noop")(lambda: None)
    return app


@dataclass
class Listener:
    """What the tenant's devices published, and the gateway account's client to send commands."""

    client: mqtt.Client
    got: dict[str, list[bytes]] = field(default_factory=dict)


@contextmanager
def _listen(services, tenant: str) -> Iterator[Listener]:  # type: ignore[no-untyped-def]
    """Collect what the tenant's devices publish, as the gateway account sees it."""
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{tenant}",
                      protocol=mqtt.MQTTv311)
    sub.username_pw_set(GATEWAY_USER, services.mqtt_creds.gateway_password)
    listener = Listener(sub)
    got = listener.got
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.setdefault(m.topic, []).append(m.payload)
    sub.connect("127.0.0.1", services.mqtt_port)
    sub.subscribe([(f"maillage/{tenant}/+/up/#", 1), (f"maillage/{tenant}/+/status", 1)])
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        yield listener
    finally:
        sub.loop_stop()
        sub.disconnect()


def _summary(output: str) -> dict[str, object]:
    return orjson.loads(output[output.index("{\n"):])  # type: ignore[no-any-return]


def _count(db_url: str, tenant: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT type, count(*) FROM devices WHERE tenant_id = %s GROUP BY type",
                            (tenant,)).fetchall()
    return {r[0]: r[1] for r in rows}


def test_territory_registers_and_publishes(services, db_url: str, stack_dir: Path,  # type: ignore[no-untyped-def]
                                           tenant_id: str) -> None:
    """Every device of a small territory is registered and publishes with its own account."""
    args = ["simulate", "--meters", "5", "--streetlights", "4", "--care-homes", "1",
            "--tenant", tenant_id, "--seed", "3", "--data-dir", str(stack_dir)]
    lamp_cmd = f"maillage/{tenant_id}/sl-rennes-00001/down/cmd"
    with _listen(services, tenant_id) as listener:
        # Retained, so the lamp finds it when it subscribes (an operator's order sent earlier).
        listener.client.publish(lamp_cmd, b'{"id": "t1", "cmd": "dim", "level": 35}', qos=1,
                                retain=True).wait_for_publish(5)
        result = CliRunner().invoke(_app(), [*args, "--duration", "4"])
        listener.client.publish(lamp_cmd, b"", qos=1, retain=True).wait_for_publish(5)
    assert result.exit_code == 0, result.output
    got = listener.got
    counts = _count(db_url, tenant_id)
    assert counts["meter"] == 5 and counts["streetlight"] == 4 and counts["care_bed"] == 1
    talking = {t.split("/")[2] for t in got if "/up/" in t}
    assert talking == {t.split("/")[2] for t in got}  # every device that said online also spoke
    assert len(talking) == sum(counts.values())
    assert all(got[t][-1] == b"offline" for t in got if t.endswith("/status"))
    ack = orjson.loads(got[f"maillage/{tenant_id}/sl-rennes-00001/up/ack"][0])
    assert ack["id"] == "t1" and ack["status"] == "done" and ack["level"] == 35
    summary = _summary(result.stdout)
    assert summary["errors"] == 0
    assert summary["acknowledged"] == summary["published"] + 2 * len(talking)  # + online, offline
    # A second run renews the credentials of the devices already registered, and recreates the
    # broker account of one the broker lost.
    with DynsecClient("127.0.0.1", services.mqtt_port, ADMIN_USER,
                      services.mqtt_creds.admin_password) as dyn:
        dyn.run([{"command": "deleteClient", "username": f"{tenant_id}/sl-rennes-00001"}])
    again = CliRunner().invoke(_app(), [*args, "--duration", "1"])
    assert again.exit_code == 0, again.output
    assert _summary(again.stdout)["errors"] == 0


def test_load_mode_relays_meters(services, db_url: str, stack_dir: Path,  # type: ignore[no-untyped-def]
                                 tenant_id: str) -> None:
    """Load mode: devices registered in bulk, relays publishing SenML packs on their behalf."""
    args = ["simulate", "--load", "--devices", "2000", "--connections", "4", "--batch", "10",
            "--rate", "2000", "--duration", "2", "--tenant", tenant_id,
            "--data-dir", str(stack_dir)]
    with _listen(services, tenant_id) as listener:
        result = CliRunner().invoke(_app(), args)
        assert result.exit_code == 0, result.output
    got = listener.got
    assert _count(db_url, tenant_id) == {"care_hub": 4, "care_env": 500, "care_motion": 1000,
                                         "care_bed": 500}
    summary = _summary(result.stdout)
    assert summary["errors"] == 0 and summary["relays"] == 4
    assert summary["packs_acknowledged"] > 50  # type: ignore[operator]
    pack = orjson.loads(next(p for t, ps in got.items() if t.endswith("/up/senml") for p in ps))
    names = {r["bn"] for r in pack if "bn" in r}
    assert len(names) == 10 and all(n.startswith("urn:dev:maillage:ld-") for n in names)


def test_accelerated_run_replays_the_recent_past(services, stack_dir: Path,  # type: ignore[no-untyped-def]
                                                 tenant_id: str) -> None:
    """`--speed 600 --duration 3`: half an hour of readings, all in the past, in 3 seconds."""
    args = ["simulate", "--meters", "2", "--streetlights", "2", "--tenant", tenant_id,
            "--speed", "600", "--duration", "3", "--data-dir", str(stack_dir)]
    with _listen(services, tenant_id) as listener:
        result = CliRunner().invoke(_app(), args)
        assert result.exit_code == 0, result.output
    # Malformed payloads (an injected anomaly kind, labelled) are the gateway's business: skipped.
    stamps = sorted(_utc(doc["ts"]) for t, ps in listener.got.items()
                    if "/sl-" in t and t.endswith("/up/json")
                    for doc in map(_json_or_none, ps) if doc is not None)
    summary = _summary(result.stdout)
    assert summary["errors"] == 0
    start, end = _utc(str(summary["start"])), _utc(str(summary["simulated_until"]))
    assert start <= stamps[0] and stamps[-1] <= end <= datetime.now(UTC)
    assert end - start >= timedelta(minutes=20)


def _json_or_none(payload: bytes) -> dict[str, str] | None:
    try:
        return orjson.loads(payload)  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        return None


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
