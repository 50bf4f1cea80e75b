"""`maillage alerts policy set|list|remove`, `subscribe`, `subscriptions`, `unsubscribe`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from maillage.cli.alerts import alerts_app


def test_policies_and_subscriptions(db_url: str, al_tenant: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILLAGE_DATABASE_URL", db_url)
    run = CliRunner().invoke
    r = run(alerts_app, ["policy", "set", "--tenant", al_tenant, "--levels", "300,900"])
    assert r.exit_code == 0, r.output
    r = run(alerts_app, ["policy", "set", "--tenant", al_tenant, "--kind", "spike", "--levels",
                         "600", "--quiet-from", "22:00", "--quiet-to", "07:00"])
    assert r.exit_code == 0, r.output
    items = json.loads(run(alerts_app, ["policy", "list", "--tenant", al_tenant]).output)["items"]
    assert [(p["kind"], p["levels_s"], p["quiet_from"]) for p in items] == [
        ("*", [300, 900], None), ("spike", [600], "22:00:00")]
    bad = run(alerts_app, ["policy", "set", "--tenant", al_tenant, "--levels", "900,300"])
    assert bad.exit_code != 0 and "increasing" in bad.output

    r = run(alerts_app, ["subscribe", "--tenant", al_tenant, "--channel", "webhook", "--target",
                         "https://example.org/hook", "--secret", "k", "--level", "1", "--care",
                         "--kinds", "fall,panic_button"])
    assert r.exit_code == 0, r.output
    sub = json.loads(r.output)
    assert (sub["channel"], sub["level"], sub["care"], sub["kinds"]) == (
        "webhook", 1, True, ["fall", "panic_button"])
    assert "secret" not in sub
    r = run(alerts_app, ["subscribe", "--tenant", al_tenant, "--channel", "email", "--target",
                         "not-an-address"])
    assert r.exit_code != 0
    r = run(alerts_app, ["subscribe", "--tenant", "nosuchtenant", "--channel", "email",
                         "--target", "a@example.org"])
    assert r.exit_code != 0 and "unknown tenant" in r.output
    assert run(alerts_app, ["unsubscribe", str(sub["id"])]).exit_code == 0
    listed = json.loads(run(alerts_app, ["subscriptions", "--tenant", al_tenant]).output)["items"]
    assert [s["active"] for s in listed] == [False]
    assert run(alerts_app, ["unsubscribe", str(sub["id"])]).exit_code != 0
    assert run(alerts_app, ["policy", "remove", "--tenant", al_tenant, "--kind", "spike"]).exit_code == 0
