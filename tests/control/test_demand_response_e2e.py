"""Acceptance 5 of issue 16: during a declared peak window the commune's lamps are dimmed by
rule, the load measured from the stored readings drops by the expected kW, and the lamps are
restored after the window."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.commands.lighting_stack import COMMUNE, LightingWorld, lamp_power_w
from tests.e2e.conftest import wait_until

LEVEL = 50.0


def test_peak_window_sheds_the_expected_kw(lighting: LightingWorld) -> None:
    lamps = sorted(lighting.nominal_w)
    r = lighting.post(f"/v1/groups/commune:{COMMUNE}/commands", {"cmd": "auto"})
    assert lighting.wait_command(r.json()["id"])["state"] == "done"  # every lamp at 100 % now
    # The shed is measured over the window's length before it (minus 1 s) against the window.
    # The before period starts 2 s from now: a simulated reading is stamped up to its interval
    # (0.5 s) after the lamp's state it carries was taken.
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=7)
    end = start + timedelta(seconds=5)
    r = lighting.post("/v1/peak-windows", {"area": "commune", "name": COMMUNE, "level": LEVEL,
                                           "start": start.isoformat(), "end": end.isoformat()})
    assert r.status_code == 201, r.text
    window = r.json()
    assert window["state"] == "scheduled" and window["dim_command_id"] is None

    time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 2)

    def restored() -> bool:
        w = lighting.get(f"/v1/peak-windows/{window['id']}").json()
        return bool(w["restore_state"] == "done")

    assert wait_until(restored, 20, 0.2)
    w = lighting.get(f"/v1/peak-windows/{window['id']}").json()
    assert w["state"] == "over" and w["dim_state"] == "done", w
    dim = lighting.command(w["dim_command_id"])
    assert dim["cmd"] == "dim" and dim["level"] == LEVEL and dim["devices"] == len(lamps)
    assert dim["issued_by"] == f"peak_window:{window['id']}"
    assert datetime.fromisoformat(dim["created_at"]) >= start
    expected_before = sum(lamp_power_w(lighting.nominal_w[d], 100) for d in lamps) / 1000
    expected_shed = expected_before - sum(lamp_power_w(lighting.nominal_w[d], LEVEL)
                                          for d in lamps) / 1000
    m = w["measured"]
    assert m is not None and m["lamps"] == len(lamps), w
    assert abs(m["before_kw"] - expected_before) <= 0.01 * expected_before, (m, expected_before)
    assert abs(m["shed_kw"] - expected_shed) <= 0.01 * expected_shed, (m, expected_shed)
    lighting.wait_level(lamps, 100.0, datetime.fromisoformat(
        lighting.command(w["restore_command_id"])["finished_at"]))
