"""The README's demo: `maillage up --simulate` gives simulated readings through the API."""

from __future__ import annotations

import json

import httpx

from tests.e2e.conftest import maillage_cmd, running_stack, wait_until


def test_demo_readings_are_queryable_through_the_api() -> None:
    """The documented curl flow: a token for tenant demo, the device list, a meter's readings."""
    with running_stack("maillage-demo-", "--simulate") as (data, status):
        assert wait_until(lambda: maillage_cmd(data, "tokens", "create", "--tenant", "demo", "--role",
                                               "energy_manager", "--json", check=False).returncode == 0,
                          timeout=120)
        token = json.loads(maillage_cmd(data, "tokens", "create", "--tenant", "demo", "--role",
                                        "energy_manager", "--json").stdout)["token"]
        headers = {"Authorization": f"Bearer {token}"}
        api = status["api_url"]

        def meter_readings() -> list[dict[str, object]]:
            meters = httpx.get(f"{api}/v1/devices", params={"type": "meter", "limit": 5},
                               headers=headers, timeout=10).json()["items"]
            for meter in meters:
                items = httpx.get(f"{api}/v1/devices/{meter['device_id']}/readings", headers=headers,
                                  timeout=10).json()["items"]
                if items:
                    return list(items)
            return []

        assert wait_until(lambda: bool(meter_readings()), timeout=120, interval=1)
        metrics = {r["metric"] for r in meter_readings()}
        assert metrics & {"energy_import_wh", "active_power_w", "apparent_power_va"}
        types = {d["type"] for d in httpx.get(f"{api}/v1/devices", params={"limit": 10000},
                                               headers=headers, timeout=10).json()["items"]}
        assert {"meter", "streetlight", "lighting_cabinet"} <= types
        assert not any(t.startswith("care_") for t in types)  # energy managers see no care data
