"""Acceptance 4 of issue 16: a presence event raises the street's lamps within 2 s, and they go
back to the night level after the rule's delay. The closed loop runs on the real stack:
presence sensor -> MQTT -> gateway -> Kafka -> control processor -> command (outbox, Kafka,
commands processor) -> MQTT -> simulated lamps -> acks and readings."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from tests.commands.lighting_stack import LightingWorld
from tests.e2e.conftest import Device, Publisher, wait_until

HOLD_S = 3.0


def test_presence_raises_the_street_then_it_returns_to_night_level(lighting: LightingWorld) -> None:
    street, lamps = sorted(lighting.streets.items())[-1]
    out = lighting.stack.cli("devices", "add", "--tenant", lighting.tenant, "--id", "pres-test",
                             "--type", "presence", "--meta", f"street={street}", "--json")
    creds = json.loads(out.stdout)
    sensor = Device(lighting.tenant, "pres-test", creds["mqtt_username"], creds["mqtt_password"],
                    creds["topic_prefix"])
    r = lighting.post("/v1/lighting/rules", {"area": "street", "name": street, "level": 100,
                                             "night_level": 20, "hold_s": HOLD_S})
    assert r.status_code == 201, r.text
    rule = r.json()
    # The street at its night level first.
    r = lighting.post(f"/v1/groups/street:{street}/commands", {"cmd": "dim", "level": 20})
    assert lighting.wait_command(r.json()["id"])["state"] == "done"
    lighting.wait_level(lamps, 20.0, datetime.now(UTC))

    pub = Publisher(lighting.stack, sensor)
    try:
        since = datetime.now(UTC)
        t0 = time.monotonic()
        assert pub.publish("up/json", f'{{"ts": "{since.isoformat()}", '
                                      '"values": {"presence_count": 2}}') == 0
        raised: list[dict[str, object]] = []

        def lamps_raised() -> bool:
            nonlocal raised
            raised = [c for c in lighting.get("/v1/commands", issued_by=f"rule:{rule['id']}").json()["items"]
                      if c["level"] == 100 and c["state"] == "done"]
            return bool(raised)

        assert wait_until(lamps_raised, 10, 0.05)
        latency = time.monotonic() - t0
    finally:
        pub.close()
    assert latency < 2.0, f"lamps raised {latency:.2f} s after the presence"
    (up,) = raised
    assert up["done"] == len(lamps) and up["target"] == f"street:{street}"
    lighting.wait_level(lamps, 100.0, since)

    # No more presence: back to 20 % once the hold has passed.
    def lowered() -> list[dict[str, object]]:
        return [c for c in lighting.get("/v1/commands", issued_by=f"rule:{rule['id']}").json()["items"]
                if c["level"] == 20]

    assert wait_until(lambda: bool(lowered()), HOLD_S + 10, 0.1)
    (down,) = lowered()
    held = (datetime.fromisoformat(str(down["created_at"]))
            - datetime.fromisoformat(str(up["created_at"]))).total_seconds()
    assert held >= HOLD_S, held
    done = lighting.wait_command(int(str(down["id"])))
    assert done["state"] == "done"
    lighting.wait_level(lamps, 20.0, datetime.fromisoformat(str(done["finished_at"])))
    rules = lighting.get("/v1/lighting/rules").json()["items"]
    assert [(x["id"], x["raised_until"], x["raised_count"]) for x in rules] == [(rule["id"], None, 1)]
