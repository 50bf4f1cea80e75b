"""`maillage lighting rules add|list|delete`: the CLI path to the rules the API manages."""

from __future__ import annotations

import json

from tests.commands.lighting_stack import LightingWorld


def test_rules_from_the_cli(lighting: LightingWorld) -> None:
    street = sorted(lighting.streets)[0]
    args = ["lighting", "rules", "add", "--tenant", lighting.tenant, "--area", "street", "--name",
            street, "--level", "90", "--night-level", "10", "--hold", "30"]
    rule = json.loads(lighting.stack.cli(*args).stdout)
    assert (rule["area"], rule["name"], rule["level"], rule["created_by"]) == (
        "street", street, 90.0, "cli")
    again = lighting.stack.cli(*args, check=False)
    assert again.returncode != 0 and "already has a rule" in again.stderr
    bad = lighting.stack.cli(*args[:8], "nowhere", *args[9:], check=False)
    assert bad.returncode != 0 and "no streetlight" in bad.stderr
    via_api = lighting.get("/v1/lighting/rules").json()["items"]
    assert rule["id"] in [r["id"] for r in via_api]
    lighting.stack.cli("lighting", "rules", "delete", str(rule["id"]))
    listed = json.loads(lighting.stack.cli("lighting", "rules", "list", "--tenant",
                                           lighting.tenant).stdout)
    assert rule["id"] not in [r["id"] for r in listed]
