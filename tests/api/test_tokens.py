"""Tokens through the API: 401 with the reason for expired and revoked tokens, revocation at once,
`GET /v1/tokens` and `POST /v1/tokens/{id}/revoke` for admins of the tenant (or of every tenant)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.test_alerts_world import World, make_world


@pytest.fixture(scope="module")
def world(db_url: str) -> World:
    """Two tenants with tokens of every role (and an expired one, a revoked one)."""
    return make_world(db_url)


def test_expired_and_revoked_tokens_get_401_with_the_reason(client: TestClient,
                                                            world: World) -> None:
    """Each refusal says why, and asks for a bearer token."""
    for who, reason in (("expired", "expired at"), ("revoked", "was revoked at")):
        r = client.get("/v1/alerts", headers=world.headers(who))
        assert r.status_code == 401
        assert f"token {world.token_ids[who]} {reason}" in r.json()["error"]["message"]
        assert r.headers["www-authenticate"] == "Bearer"
    r = client.get("/v1/alerts", headers={"Authorization": "Bearer mlg_unknown"})
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid token"
    assert client.get("/v1/alerts", headers=world.headers("never")).status_code == 200


def test_list_tokens(client: TestClient, world: World) -> None:
    """A tenant admin lists its tenant's tokens, never a secret; the root admin any tenant's."""
    r = client.get("/v1/tokens", headers=world.headers("admin"))
    assert r.status_code == 200
    items = r.json()["items"]
    assert {i["tenant"] for i in items} == {world.a}
    mine = {i["id"]: i for i in items}
    assert set(mine) >= {world.token_ids[k] for k in ("admin", "energy_manager", "expired")}
    assert mine[world.token_ids["never"]]["expires_at"] is None
    assert mine[world.token_ids["revoked"]]["revoked_at"] is not None
    assert mine[world.token_ids["admin"]]["last_used_at"] is not None  # it just read the list
    assert not any(world.tokens["admin"] in str(i) for i in items)
    assert set(items[0]) == {"id", "tenant", "role", "label", "created_at", "expires_at",
                             "last_used_at", "revoked_at"}
    r = client.get("/v1/tokens", params={"tenant": world.b}, headers=world.headers("root"))
    assert {i["tenant"] for i in r.json()["items"]} == {world.b}
    r = client.get("/v1/tokens", params={"tenant": "*"}, headers=world.headers("root"))
    assert world.token_ids["root"] in {i["id"] for i in r.json()["items"]}
    assert client.get("/v1/tokens", params={"tenant": world.b},
                      headers=world.headers("admin")).status_code == 404


@pytest.mark.parametrize("who", ["energy_manager", "care_coordinator", "opendata"])
def test_only_admins_manage_tokens(client: TestClient, world: World, who: str) -> None:
    """Other roles may neither list nor revoke tokens (403)."""
    assert client.get("/v1/tokens", headers=world.headers(who)).status_code == 403
    r = client.post(f"/v1/tokens/{world.token_ids[who]}/revoke", headers=world.headers(who))
    assert r.status_code == 403


def test_revoke_takes_effect_at_once(client: TestClient, db_url: str) -> None:
    """An admin revokes a token of its tenant: its very next request is refused; another
    tenant's token is not found for it; the root admin revokes any."""
    w = make_world(db_url)
    assert client.get("/v1/alerts", headers=w.headers("energy_manager")).status_code == 200
    r = client.post(f"/v1/tokens/{w.token_ids['energy_manager']}/revoke",
                    headers=w.headers("admin"))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = client.get("/v1/alerts", headers=w.headers("energy_manager"))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    r = client.post(f"/v1/tokens/{w.token_ids['b_admin']}/revoke", headers=w.headers("admin"))
    assert r.status_code == 404
    assert client.get("/v1/alerts", headers=w.headers("b_admin")).status_code == 200
    r = client.post(f"/v1/tokens/{w.token_ids['b_admin']}/revoke", headers=w.headers("root"))
    assert r.status_code == 200
    assert client.get("/v1/alerts", headers=w.headers("b_admin")).status_code == 401
