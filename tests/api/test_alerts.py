"""The alert API: list (filters, pages, roles, tenants), get with history, ack, resolve, comments
(one transaction, NOTIFY, 409 on a second ack or on a resolved alert), statistics, access log."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from maillage.db import alerts as db_alerts
from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token
from tests.api.test_alerts_world import T0, World, access_rows, insert_alert, make_world

ALERT_FIELDS = {"id", "tenant", "device_id", "kind", "severity", "state", "count", "first_at",
                "last_at", "opened_at", "acknowledged_at", "acknowledged_by", "resolved_at",
                "resolved_by", "escalation_level", "group"}


@pytest.fixture(scope="module")
def world(db_url: str) -> World:
    """Alerts of every visibility in two tenants."""
    return make_world(db_url)


def _list(client: TestClient, world: World, who: str, **params: Any) -> list[str]:
    r = client.get("/v1/alerts", params=params, headers=world.headers(who))
    assert r.status_code == 200, r.text
    return [world.name_of(i["id"]) for i in r.json()["items"]]


def _fresh(db_url: str, world: World, name: str, **spec: Any) -> int:
    """A new open alert of tenant a (the module's world stays as it was for other tests)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        world.ids[name] = insert_alert(conn, tenant=world.a, **spec)
    return world.ids[name]


def test_shape_latest_first(client: TestClient, world: World) -> None:
    """The contract's fields; the alert with the latest anomaly first."""
    r = client.get("/v1/alerts", headers=world.headers("admin"))
    items = r.json()["items"]
    assert [world.name_of(i["id"]) for i in items] == [
        "battery", "fall", "cabinet", "voltage", "spike"]
    assert r.json()["next"] is None
    spike = items[4]
    assert set(spike) == ALERT_FIELDS
    assert spike["tenant"] == world.a and spike["device_id"] == "meter-1"
    assert spike["count"] == 7 and spike["state"] == "open" and spike["group"] is None
    assert datetime.fromisoformat(spike["last_at"]) == T0 + timedelta(hours=1)
    assert items[2]["group"] == "cabinet:cab-1"


@pytest.mark.parametrize(("who", "expected"), [
    ("admin", ["battery", "fall", "cabinet", "voltage", "spike"]),
    ("energy_manager", ["cabinet", "voltage", "spike"]),
    ("care_coordinator", ["battery", "fall"]),
])
def test_list_by_role(client: TestClient, world: World, who: str, expected: list[str]) -> None:
    """Energy managers never see care alerts, care coordinators only those; own tenant only."""
    assert _list(client, world, who) == expected
    r = client.get("/v1/alerts", params={"tenant": world.b}, headers=world.headers(who))
    assert r.status_code == 404


def test_all_tenants_admin_and_opendata(client: TestClient, world: World) -> None:
    """An all-tenants admin reads any tenant; opendata gets 403; no token 401."""
    assert sorted(_list(client, world, "root", tenant=world.b)) == ["b_fall", "b_spike"]
    r = client.get("/v1/alerts", headers=world.headers("opendata"))
    assert r.status_code == 403 and "opendata" in r.json()["error"]["message"]
    assert client.get("/v1/alerts").status_code == 401


def test_filters(client: TestClient, world: World) -> None:
    """state, kind, severity, device and the [from, to) window on the alert's anomalies."""
    assert _list(client, world, "admin", state="acknowledged") == ["voltage"]
    assert _list(client, world, "admin", state="resolved") == ["battery"]
    assert _list(client, world, "admin", kind="fall") == ["fall"]
    assert _list(client, world, "admin", severity="critical") == ["fall", "voltage"]
    assert _list(client, world, "admin", device="cab-1") == ["cabinet"]
    t2 = (T0 + timedelta(hours=2)).isoformat()
    assert _list(client, world, "admin", **{"from": t2}) == ["battery", "fall", "cabinet", "voltage"]
    t130 = (T0 + timedelta(hours=1, minutes=30)).isoformat()
    assert _list(client, world, "admin", to=t130) == ["spike"]
    # The spike's anomalies span 06:00-07:00: a window inside it finds it.
    assert _list(client, world, "admin", **{"from": (T0 + timedelta(minutes=30)).isoformat(),
                                            "to": (T0 + timedelta(minutes=40)).isoformat()}) == [
        "spike"]


@pytest.mark.parametrize(("params", "where"), [
    ({"kind": "falls"}, "kind: unknown kind 'falls'"),
    ({"state": "closed"}, "state"),
    ({"from": "2026-11-23T00:00:00"}, "from: give a time zone"),
    ({"from": "2026-11-23T01:00:00Z", "to": "2026-11-23T00:00:00Z"}, "'to' must be after"),
    ({"after": "nonsense"}, "after: not a cursor"),
])
def test_bad_queries(client: TestClient, world: World, params: dict[str, str], where: str) -> None:
    """Bad filters answer 422 with a message naming the problem."""
    r = client.get("/v1/alerts", params=params, headers=world.headers("admin"))
    assert r.status_code == 422 and where in r.json()["error"]["message"]


def test_pagination(client: TestClient, db_url: str) -> None:
    """Pages follow `next` latest first without gaps or repeats, ties on last_at included."""
    tenant = f"ap{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant)
        token = create_token(conn, tenant=tenant, role="energy_manager")
        made = [insert_alert(conn, tenant=tenant, kind="spike", device=f"m-{i}", care=False,
                             first_at=T0 + timedelta(minutes=i // 3)) for i in range(25)]
    got: list[int] = []
    params: dict[str, Any] = {"limit": 10}
    while True:
        r = client.get("/v1/alerts", params=params, headers={"Authorization": f"Bearer {token}"})
        body = r.json()
        got += [i["id"] for i in body["items"]]
        if body["next"] is None:
            break
        params["after"] = body["next"]
    expected = sorted(made, key=lambda i: (made.index(i) // 3, i), reverse=True)
    assert got == expected


@pytest.mark.parametrize("who", ["admin", "energy_manager", "care_coordinator", "root"])
@pytest.mark.parametrize("name", ["spike", "fall", "b_spike", "b_fall"])
def test_get_matrix(client: TestClient, world: World, who: str, name: str) -> None:
    """Role x care/non-care x own/other tenant: the alert with its history (200), or 404."""
    care, own = world.care[name], not name.startswith("b_")
    visible = who == "root" or (own and (who == "admin" or (who == "care_coordinator") == care))
    r = client.get(f"/v1/alerts/{world.ids[name]}", headers=world.headers(who))
    if visible:
        body = r.json()
        assert r.status_code == 200 and body["id"] == world.ids[name]
        assert set(body) == ALERT_FIELDS | {"events"}
        assert [(e["action"], e["actor"]) for e in body["events"]] == [("opened", "system")]
    else:
        assert r.status_code == 404
        assert f"alert {world.ids[name]} not found" in r.json()["error"]["message"]


def _events(db_url: str, alert_id: int) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT actor, action, detail, snapshot FROM alert_events "
                            "WHERE alert_id = %s ORDER BY id", (alert_id,)).fetchall()


def test_ack_then_resolve(client: TestClient, world: World, db_url: str) -> None:
    """Ack and resolve change the row (who, when, version, escalation stopped) and write one
    event each with the snapshot; a second ack and anything on a resolved alert answer 409."""
    alert_id = _fresh(db_url, world, "meter_ack", kind="spike", device="meter-5", care=False)
    h = world.headers("energy_manager")
    actor = f"token:{world.token_ids['energy_manager']} (energy_manager of {world.a})"
    r = client.post(f"/v1/alerts/{alert_id}/ack", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"] == actor
    assert body["acknowledged_at"] is not None
    with psycopg.connect(db_url) as conn:
        version, escalation = conn.execute(
            "SELECT version, next_escalation_at FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    assert version == 2 and escalation is None

    r = client.post(f"/v1/alerts/{alert_id}/ack", headers=world.headers("admin"))
    assert r.status_code == 409
    assert f"already acknowledged by {actor}" in r.json()["error"]["message"]

    r = client.post(f"/v1/alerts/{alert_id}/comments", json={"text": "technician called"},
                    headers=h)
    assert r.status_code == 201 and r.json()["state"] == "acknowledged"
    r = client.post(f"/v1/alerts/{alert_id}/resolve", json={"note": "fuse replaced"}, headers=h)
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    assert r.json()["resolved_by"] == actor

    for path, body_json in (("ack", None), ("resolve", None), ("comments", {"text": "late"})):
        r = client.post(f"/v1/alerts/{alert_id}/{path}", json=body_json, headers=h)
        assert r.status_code == 409, path
        assert f"alert {alert_id} was resolved by {actor}" in r.json()["error"]["message"]

    events = _events(db_url, alert_id)
    assert [(e[0], e[1], e[2]) for e in events] == [
        ("system", "opened", {}), (actor, "acknowledged", {}),
        (actor, "commented", {"comment": "technician called"}),
        (actor, "resolved", {"note": "fuse replaced"})]
    assert [e[3]["state"] for e in events] == ["open", "acknowledged", "acknowledged", "resolved"]
    assert set(events[-1][3]) == ALERT_FIELDS
    got = client.get(f"/v1/alerts/{alert_id}", headers=h).json()
    assert [e["action"] for e in got["events"]] == ["opened", "acknowledged", "commented", "resolved"]
    assert got["events"][2]["detail"] == {"comment": "technician called"}


def test_resolve_open_directly(client: TestClient, world: World, db_url: str) -> None:
    """An open alert may be resolved without an ack; escalation stops there too."""
    alert_id = _fresh(db_url, world, "fall_resolve", kind="fall", device="care-bed-2", care=True,
                      severity="critical")
    r = client.post(f"/v1/alerts/{alert_id}/resolve", headers=world.headers("care_coordinator"))
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT next_escalation_at, version FROM alerts WHERE id = %s",
                            (alert_id,)).fetchone() == (None, 2)


@pytest.mark.parametrize(("who", "name", "code"), [
    ("energy_manager", "fall", 404), ("care_coordinator", "spike", 404),
    ("admin", "b_spike", 404), ("opendata", "spike", 403),
])
def test_acting_out_of_scope(client: TestClient, world: World, db_url: str, who: str, name: str,
                             code: int) -> None:
    """Nobody acts on an alert they may not see; nothing is written."""
    before = len(_events(db_url, world.ids[name]))
    for path, body in (("ack", None), ("resolve", None), ("comments", {"text": "x"})):
        r = client.post(f"/v1/alerts/{world.ids[name]}/{path}", json=body,
                        headers=world.headers(who))
        assert r.status_code == code
    assert len(_events(db_url, world.ids[name])) == before


def test_comment_validation(client: TestClient, world: World) -> None:
    """A comment needs text."""
    r = client.post(f"/v1/alerts/{world.ids['spike']}/comments", json={"text": ""},
                    headers=world.headers("admin"))
    assert r.status_code == 422 and "text" in r.json()["error"]["message"]


def test_action_notifies(client: TestClient, world: World, db_url: str) -> None:
    """An ack sends NOTIFY alert_events with the new event's id, once committed."""
    alert_id = _fresh(db_url, world, "meter_notify", kind="spike", device="meter-6", care=False)
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN alert_events")
        assert client.post(f"/v1/alerts/{alert_id}/ack",
                           headers=world.headers("admin")).status_code == 200
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
        last = listener.execute("SELECT max(id) FROM alert_events WHERE alert_id = %s",
                                (alert_id,)).fetchone()
    assert last is not None and str(last[0]) in payloads


def test_stats(client: TestClient, db_url: str) -> None:
    """p50 and p90 of time to acknowledge and to resolve per kind, over alerts opened in the window."""
    tenant = f"as{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant)
        token = create_token(conn, tenant=tenant, role="admin")
        cc = create_token(conn, tenant=tenant, role="care_coordinator")
        for minutes in range(1, 11):  # falls acked after 1..10 min, resolved 10 min later
            insert_alert(conn, tenant=tenant, kind="fall", device=f"c-{minutes}", care=True,
                         state="resolved", opened_at=T0,
                         acknowledged_at=T0 + timedelta(minutes=minutes),
                         resolved_at=T0 + timedelta(minutes=minutes + 10))
        insert_alert(conn, tenant=tenant, kind="spike", device="m-1", care=False, opened_at=T0)
        insert_alert(conn, tenant=tenant, kind="spike", device="m-2", care=False,
                     opened_at=T0 - timedelta(days=2))  # before the window
    params = {"from": (T0 - timedelta(hours=1)).isoformat(),
              "to": (T0 + timedelta(hours=1)).isoformat()}
    r = client.get("/v1/alerts/stats", params=params, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    by_kind = {i["kind"]: i for i in r.json()["items"]}
    fall = by_kind["fall"]
    assert (fall["alerts"], fall["acknowledged"], fall["resolved"]) == (10, 10, 10)
    assert fall["ack_p50_s"] == pytest.approx(330.0)  # 5.5 min: the median of 1..10
    assert fall["ack_p90_s"] == pytest.approx(546.0)  # 9.1 min, interpolated
    assert fall["resolve_p50_s"] == pytest.approx(930.0)
    spike = by_kind["spike"]
    assert spike["alerts"] == 1 and spike["acknowledged"] == 0 and spike["ack_p50_s"] is None
    r = client.get("/v1/alerts/stats", params=params, headers={"Authorization": f"Bearer {cc}"})
    assert [i["kind"] for i in r.json()["items"]] == ["fall"]


def test_care_reads_go_to_the_access_log(client: TestClient, world: World, db_url: str) -> None:
    """Every care alert read (list or get) writes a line; non-care reads do not."""
    before = len(access_rows(db_url, world.a))
    _list(client, world, "energy_manager")
    client.get(f"/v1/alerts/{world.ids['spike']}", headers=world.headers("admin"))
    _list(client, world, "admin", kind="spike")
    assert len(access_rows(db_url, world.a)) == before
    _list(client, world, "care_coordinator", state="open", kind="fall", device="care-bed-1")
    client.get(f"/v1/alerts/{world.ids['fall']}", headers=world.headers("care_coordinator"))
    _list(client, world, "admin", device="care-door-1")
    new = access_rows(db_url, world.a)[before:]
    assert new == [
        ("care_coordinator", "care-bed-1", "list alerts"),
        ("care_coordinator", "care-bed-1", f"get alert {world.ids['fall']}"),
        ("admin", "care-door-1", "list alerts"),
    ]
    client.get(f"/v1/alerts/{world.ids['b_fall']}", headers=world.headers("care_coordinator"))
    assert len(access_rows(db_url, world.a)) == before + 3


def test_concurrent_acks_one_wins(world: World, db_url: str) -> None:
    """Ten people acknowledge the same alert at once: one wins, nine get the refusal, one event."""
    alert_id = _fresh(db_url, world, "meter_race", kind="spike", device="meter-7", care=False)

    async def one(i: int) -> str:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            try:
                await db_alerts.act(conn=conn, alert_id=alert_id, tenant=world.a, care=None,
                                    action="acknowledged", actor=f"person-{i}", detail={})
            except db_alerts.ActionRefused:
                return "refused"
            return "acked"

    async def all_of_them() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(10)))

    assert sorted(asyncio.run(all_of_them())) == ["acked"] + ["refused"] * 9
    assert [e[1] for e in _events(db_url, alert_id)] == ["opened", "acknowledged"]
