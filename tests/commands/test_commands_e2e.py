"""Acceptance 3 of issue 16: a dimming command travels API -> Kafka -> MQTT -> simulated lamp ->
ack, and the lamp's next readings show the new level; a command to a device that never answers
ends `failed` after its retries. On a real `maillage up` stack (lighting_stack.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime

import psycopg
from aiokafka import AIOKafkaProducer

from maillage import topics
from tests.commands.lighting_stack import LightingWorld, lamp_power_w
from tests.e2e.conftest import wait_until


def test_dimming_a_street_reaches_the_lamps_and_their_readings(lighting: LightingWorld) -> None:
    """A group command dims one street's lamps to 40 %: every lamp acknowledges it once, the
    command is `done`, its audit names the token, and the lamps then report 40 % and the power
    of 40 %; the other street is untouched."""
    street, lamps = sorted(lighting.streets.items())[0]
    other = [d for s, ds in lighting.streets.items() if s != street for d in ds]
    since = datetime.now(UTC)
    r = lighting.post(f"/v1/groups/street:{street}/commands", {"cmd": "dim", "level": 40})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["state"] == "pending" and accepted["devices"] == len(lamps) >= 2
    cmd = lighting.wait_command(accepted["id"])
    assert cmd["state"] == "done", cmd
    assert cmd["done"] == len(lamps) and cmd["failed"] == 0
    assert cmd["issued_by"].startswith("token:") and cmd["role"] == "admin" and cmd["token_id"]
    assert sorted(t["device_id"] for t in cmd["targets"]) == sorted(lamps)
    for t in cmd["targets"]:
        assert t["state"] == "done" and t["attempts"] == 1, t
        assert t["result"]["level"] == 40, t
    with psycopg.connect(lighting.stack.db()) as conn:  # it went through the outbox and Kafka
        rows = conn.execute("SELECT produced_at IS NOT NULL, accepted_at IS NOT NULL "
                            "FROM command_targets WHERE command_id = %s", (cmd["id"],)).fetchall()
    assert rows == [(True, True)] * len(lamps)
    lighting.wait_level(lamps, 40.0, since)
    for d in lamps:
        assert lamp_power_w(lighting.nominal_w[d], 40) < lamp_power_w(lighting.nominal_w[d], 100)
    for d in other:  # the other street's newest readings still show full power
        last = lighting.readings(d, "dimming_pct", since)[-1]
        assert last["value"] == 100.0, (d, last)
    listed = lighting.get("/v1/commands", state="done", target=f"street:{street}").json()["items"]
    assert cmd["id"] in [c["id"] for c in listed]


def test_a_device_that_never_answers_fails_after_its_retries(lighting: LightingWorld) -> None:
    """A registered lamp with no controller online: sent three times (ack waits 0.6, 1.2,
    2.4 s), then `failed` with the reason; the audit list shows it failed."""
    lighting.add_device("ghost-lamp", "streetlight")
    r = lighting.post("/v1/devices/ghost-lamp/commands", {"cmd": "dim", "level": 30})
    assert r.status_code == 202, r.text
    cmd = lighting.wait_command(r.json()["id"], timeout=40)
    assert cmd["state"] == "failed", cmd
    (target,) = cmd["targets"]
    assert target["attempts"] == 3 and target["error"] == "no ack after 3 attempts", target
    failed = lighting.get("/v1/commands", state="failed", device="ghost-lamp").json()["items"]
    assert [c["id"] for c in failed] == [cmd["id"]]


def test_bad_commands_are_refused_with_a_reason(lighting: LightingWorld) -> None:
    """Validation and scope: 422 with a message, 404 for unknown devices and empty groups."""
    cases = [("/v1/devices/ghost-lamp/commands", {"cmd": "dim"}, 422, "level"),
             ("/v1/devices/ghost-lamp/commands", {"cmd": "dim", "level": 140}, 422, "level"),
             ("/v1/devices/ghost-lamp/commands", {"cmd": "on", "level": 10}, 422, "no level"),
             ("/v1/devices/ghost-lamp/commands", {"cmd": "blink"}, 422, "cmd"),
             ("/v1/devices/nope/commands", {"cmd": "on"}, 404, "not found"),
             ("/v1/groups/street:nowhere/commands", {"cmd": "on"}, 404, "no streetlight"),
             ("/v1/groups/planet:earth/commands", {"cmd": "on"}, 422, "group id")]
    for path, body, code, words in cases:
        r = lighting.post(path, body)
        assert r.status_code == code and words in r.text, (path, body, r.status_code, r.text)
    care = lighting.make_token("care_coordinator")
    r = lighting.post("/v1/devices/ghost-lamp/commands", {"cmd": "on"}, token=care)
    assert r.status_code == 403, r.text


def test_a_schedule_is_obeyed_by_the_lamps(lighting: LightingWorld) -> None:
    """`schedule` steps (local time -> level) reach the lamps, which follow the current step."""
    street, lamps = sorted(lighting.streets.items())[-1]
    since = datetime.now(UTC)
    steps = [{"at": "00:00", "level": 60}, {"at": "23:59", "level": 60}]
    r = lighting.post(f"/v1/groups/street:{street}/commands", {"cmd": "schedule", "steps": steps})
    assert r.status_code == 202, r.text
    cmd = lighting.wait_command(r.json()["id"])
    assert cmd["state"] == "done" and cmd["params"] == {"steps": steps}, cmd
    lighting.wait_level(lamps, 60.0, since)


def test_commands_survive_a_crash_of_the_commands_processor(lighting: LightingWorld) -> None:
    """The commands processor killed (SIGKILL): a command recorded meanwhile waits in the outbox
    and is delivered once when the supervisor has started the processor again; a record on
    maillage.commands that names no command is kept in `rejected`, and delivery goes on."""
    state = json.loads((lighting.stack.data_dir / "state.json").read_text())
    old_pid = int(state["pids"]["commands"])
    os.kill(old_pid, signal.SIGKILL)
    street, lamps = sorted(lighting.streets.items())[0]
    since = datetime.now(UTC)
    r = lighting.post(f"/v1/groups/street:{street}/commands", {"cmd": "dim", "level": 70})
    assert r.status_code == 202, r.text
    cmd = lighting.wait_command(r.json()["id"], timeout=90)
    assert cmd["state"] == "done", cmd
    assert [t["attempts"] for t in cmd["targets"]] == [1] * len(lamps)
    new_pid = json.loads((lighting.stack.data_dir / "state.json").read_text())["pids"]["commands"]
    assert new_pid != old_pid
    lighting.wait_level(lamps, 70.0, since)

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=lighting.stack.status["kafka_bootstrap"])
        await producer.start()
        try:
            await producer.send_and_wait(topics.COMMANDS, b'{"id": "nope"}',
                                         key=f"{lighting.tenant}/{lamps[0]}".encode())
        finally:
            await producer.stop()

    asyncio.run(produce())
    with psycopg.connect(lighting.stack.db(), autocommit=True) as conn:
        def rejected() -> bool:
            row = conn.execute("SELECT detail FROM rejected WHERE tenant_id = %s AND "
                               "mqtt_topic = 'kafka:maillage.commands'", (lighting.tenant,)).fetchone()
            return row is not None and "'id' must be an integer" in row[0]

        assert wait_until(rejected, 30, 0.2)
    r = lighting.post(f"/v1/groups/street:{street}/commands", {"cmd": "dim", "level": 40})
    assert lighting.wait_command(r.json()["id"])["state"] == "done"
