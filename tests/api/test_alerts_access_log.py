"""`GET /v1/access-log`: tenant admins read (JSON pages, CSV) who read which care data, when."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from tests.api.test_alerts_world import World, make_world


@pytest.fixture(scope="module")
def world(client: TestClient, db_url: str) -> World:
    """A tenant whose care alerts were read three times (list, get), and another tenant's once."""
    w = make_world(db_url)
    client.get("/v1/alerts", params={"kind": "fall"}, headers=w.headers("care_coordinator"))
    client.get(f"/v1/alerts/{w.ids['fall']}", headers=w.headers("care_coordinator"))
    client.get(f"/v1/alerts/{w.ids['battery']}", headers=w.headers("admin"))
    client.get(f"/v1/alerts/{w.ids['b_fall']}", headers=w.headers("root"))
    return w


def test_json_newest_first_own_tenant(client: TestClient, world: World) -> None:
    """The tenant's lines only, newest first, with who (token id, role), what and which device."""
    r = client.get("/v1/access-log", headers=world.headers("admin"))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["role"], i["device_id"], i["what"]) for i in items] == [
        ("admin", "care-door-1", f"get alert {world.ids['battery']}"),
        ("care_coordinator", "care-bed-1", f"get alert {world.ids['fall']}"),
        ("care_coordinator", "care-bed-1", "list alerts"),
    ]
    assert items[1]["token_id"] == world.token_ids["care_coordinator"]
    assert {i["tenant"] for i in items} == {world.a}
    r = client.get("/v1/access-log", params={"device": "care-door-1"}, headers=world.headers("admin"))
    assert len(r.json()["items"]) == 1


def test_pages_and_csv(client: TestClient, world: World) -> None:
    """`limit` and `before` page through; `format=csv` gives the same lines as CSV."""
    r = client.get("/v1/access-log", params={"limit": 2}, headers=world.headers("admin"))
    first = r.json()
    assert len(first["items"]) == 2 and first["next"] is not None
    r = client.get("/v1/access-log", params={"limit": 2, "before": first["next"]},
                   headers=world.headers("admin"))
    assert [i["what"] for i in r.json()["items"]] == ["list alerts"] and r.json()["next"] is None
    r = client.get("/v1/access-log", params={"format": "csv"}, headers=world.headers("admin"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["what"] for row in rows] == [
        f"get alert {world.ids['battery']}", f"get alert {world.ids['fall']}", "list alerts"]
    assert set(rows[0]) == {"id", "at", "token_id", "role", "tenant", "device_id", "what"}


def test_who_may_read_it(client: TestClient, world: World) -> None:
    """Admins only; a tenant admin never another tenant's lines; the root admin any tenant's."""
    for who in ("energy_manager", "care_coordinator", "opendata"):
        assert client.get("/v1/access-log", headers=world.headers(who)).status_code == 403
    assert client.get("/v1/access-log", params={"tenant": world.b},
                      headers=world.headers("admin")).status_code == 404
    r = client.get("/v1/access-log", params={"tenant": world.b}, headers=world.headers("root"))
    assert [(i["tenant"], i["what"]) for i in r.json()["items"]] == [
        (world.b, f"get alert {world.ids['b_fall']}")]
