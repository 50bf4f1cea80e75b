"""GET /v1/anomalies and /v1/anomalies/{id}: filters, pages, roles, tenants, care access log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from maillage.api.routes.anomalies import KINDS
from maillage.db.detection import record_transitions
from maillage.processors.detection.model import Anomaly, Kind, Severity, Transition
from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def _us(dt: datetime) -> int:
    return int(dt.timestamp() * 1_000_000)


@dataclass
class World:
    """Two tenants with anomalies of every visibility, and tokens of every role."""

    a: str
    b: str
    tokens: dict[str, str]  # role (or "root") -> token, of tenant a
    ids: dict[str, str]  # name -> anomaly id

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _anomaly(tenant: str, device: str, kind: Kind, start: datetime, end: datetime | None = None,
             severity: Severity = Severity.WARNING, group: str | None = None) -> Anomaly:
    return Anomaly(tenant=tenant, device_id=device, kind=kind, severity=severity, score=0.7,
                   start_us=_us(start), end_us=_us(end) if end else None,
                   evidence={"value": 1.5, "threshold": 1.0}, group=group)


@pytest.fixture(scope="module")
def world(db_url: str) -> World:
    """Anomalies written through the detection stage's own write path."""
    a, b = f"ta{uuid.uuid4().hex[:8]}", f"tb{uuid.uuid4().hex[:8]}"
    rows: dict[str, tuple[Anomaly, bool]] = {
        "spike": (_anomaly(a, "meter-1", Kind.SPIKE, T0, T0 + timedelta(hours=1)), False),
        "voltage": (_anomaly(a, "meter-2", Kind.VOLTAGE_OUT_OF_RANGE, T0 + timedelta(hours=2),
                             severity=Severity.CRITICAL), False),
        "cabinet": (_anomaly(a, "cab-1", Kind.GROUP_OFFLINE, T0 + timedelta(hours=3),
                             group="cabinet:cab-1"), False),
        "fall": (_anomaly(a, "care-bed-1", Kind.FALL, T0 + timedelta(hours=4),
                          T0 + timedelta(hours=4, minutes=5), Severity.CRITICAL), True),
        "battery": (_anomaly(a, "care-door-1", Kind.BATTERY_LOW, T0 + timedelta(hours=5)), True),
        "b_spike": (_anomaly(b, "meter-9", Kind.SPIKE, T0), False),
        "b_fall": (_anomaly(b, "care-bed-9", Kind.FALL, T0, severity=Severity.CRITICAL), True),
    }
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=a)
        add_tenant(conn, tenant_id=b)
        tokens = {r: create_token(conn, tenant=a, role=r)
                  for r in ("admin", "energy_manager", "care_coordinator", "opendata")}
        tokens["root"] = create_token(conn, tenant="*", role="admin")
        with conn.transaction():
            record_transitions(conn=conn,
                               transitions=[Transition(x, "open") for x, _ in rows.values()],
                               care=[c for _, c in rows.values()])
    return World(a, b, tokens, {k: v[0].id for k, v in rows.items()})


def _list(client: TestClient, world: World, who: str, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/v1/anomalies", params=params, headers=world.headers(who))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _names(world: World, items: list[dict[str, Any]]) -> list[str]:
    back = {v: k for k, v in world.ids.items()}
    return [back[i["id"]] for i in items]


def _access_rows(db_url: str, tenant: str) -> list[tuple[str, str | None, str]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT role, device_id, what FROM care_access_log WHERE tenant_id = %s "
                            "ORDER BY id", (tenant,)).fetchall()


def test_api_kinds_are_the_detection_kinds() -> None:
    """The API's kind vocabulary is the detection stage's (the API does not import it)."""
    assert set(KINDS) == {k.value for k in Kind}


def test_shape_newest_first(client: TestClient, world: World) -> None:
    """The contract's fields; the newest anomaly first."""
    items = _list(client, world, "admin")
    assert _names(world, items) == ["battery", "fall", "cabinet", "voltage", "spike"]
    cab = items[2]
    assert set(cab) == {"id", "tenant", "device_id", "kind", "severity", "score", "start", "end",
                        "evidence", "group"}
    assert cab["tenant"] == world.a and cab["device_id"] == "cab-1"
    assert cab["group"] == "cabinet:cab-1" and cab["end"] is None
    assert datetime.fromisoformat(cab["start"]) == T0 + timedelta(hours=3)
    assert items[4]["evidence"] == {"value": 1.5, "threshold": 1.0}
    assert datetime.fromisoformat(items[4]["end"]) == T0 + timedelta(hours=1)


@pytest.mark.parametrize(("who", "expected"), [
    ("admin", ["battery", "fall", "cabinet", "voltage", "spike"]),
    ("energy_manager", ["cabinet", "voltage", "spike"]),
    ("care_coordinator", ["battery", "fall"]),
])
def test_list_by_role(client: TestClient, world: World, who: str, expected: list[str]) -> None:
    """Energy managers never see care anomalies, care coordinators only those; own tenant only."""
    assert _names(world, _list(client, world, who)) == expected
    r = client.get("/v1/anomalies", params={"tenant": world.b}, headers=world.headers(who))
    assert r.status_code == 404  # another tenant does not exist for a tenant's token


def test_all_tenants_admin(client: TestClient, world: World) -> None:
    """An all-tenants admin reads any tenant's anomalies, care included."""
    assert sorted(_names(world, _list(client, world, "root", tenant=world.b))) == [
        "b_fall", "b_spike"]  # same start: the order is the ids'
    r = client.get(f"/v1/anomalies/{world.ids['b_fall']}", headers=world.headers("root"))
    assert r.status_code == 200 and r.json()["tenant"] == world.b


def test_opendata_forbidden(client: TestClient, world: World) -> None:
    """Open-data tokens see no anomaly at all (403, with a message)."""
    for path in ("/v1/anomalies", f"/v1/anomalies/{world.ids['spike']}"):
        r = client.get(path, headers=world.headers("opendata"))
        assert r.status_code == 403
        assert "opendata" in r.json()["error"]["message"]
    assert client.get("/v1/anomalies").status_code == 401


@pytest.mark.parametrize("who", ["admin", "energy_manager", "care_coordinator"])
@pytest.mark.parametrize("name", ["spike", "fall", "battery", "b_spike", "b_fall"])
def test_get_matrix(client: TestClient, world: World, who: str, name: str) -> None:
    """Role x care/non-care x own/other tenant: visible (200) or non-existent (404)."""
    care = name in ("fall", "battery", "b_fall")
    own = not name.startswith("b_")
    visible = own and (who == "admin" or (who == "care_coordinator") == care)
    r = client.get(f"/v1/anomalies/{world.ids[name]}", headers=world.headers(who))
    if visible:
        assert r.status_code == 200 and r.json()["id"] == world.ids[name]
    else:
        assert r.status_code == 404
        assert world.ids[name] in r.json()["error"]["message"]


def test_care_reads_go_to_the_access_log(client: TestClient, world: World, db_url: str) -> None:
    """Every care anomaly read (list or get) writes a line; non-care reads do not."""
    before = len(_access_rows(db_url, world.a))
    _list(client, world, "energy_manager")
    client.get(f"/v1/anomalies/{world.ids['spike']}", headers=world.headers("admin"))
    _list(client, world, "admin", kind="spike")
    assert len(_access_rows(db_url, world.a)) == before
    _list(client, world, "care_coordinator")
    client.get(f"/v1/anomalies/{world.ids['fall']}", headers=world.headers("care_coordinator"))
    _list(client, world, "admin", device="care-door-1")
    new = _access_rows(db_url, world.a)[before:]
    assert new == [
        ("care_coordinator", "care-bed-1", "list anomalies"),
        ("care_coordinator", "care-door-1", "list anomalies"),
        ("care_coordinator", "care-bed-1", f"get anomaly {world.ids['fall']}"),
        ("admin", "care-door-1", "list anomalies"),
    ]
    # A refused read (another role's or tenant's anomaly) reads nothing and logs nothing.
    client.get(f"/v1/anomalies/{world.ids['b_fall']}", headers=world.headers("care_coordinator"))
    assert len(_access_rows(db_url, world.a)) == before + 4


def test_filters(client: TestClient, world: World) -> None:
    """device, kind, severity, group, state, and the [from, to) overlap window."""
    assert _names(world, _list(client, world, "admin", device="meter-2")) == ["voltage"]
    assert _names(world, _list(client, world, "admin", kind="battery_low")) == ["battery"]
    assert _names(world, _list(client, world, "admin", severity="critical")) == ["fall", "voltage"]
    assert _names(world, _list(client, world, "admin", group="cabinet:cab-1")) == ["cabinet"]
    assert _names(world, _list(client, world, "admin", state="open")) == [
        "battery", "cabinet", "voltage"]
    assert _names(world, _list(client, world, "admin", state="closed")) == ["fall", "spike"]
    # From 02:00 on: the spike (closed at 01:00) is out, everything later or still open is in.
    t2 = (T0 + timedelta(hours=2)).isoformat()
    assert _names(world, _list(client, world, "admin", **{"from": t2})) == [
        "battery", "fall", "cabinet", "voltage"]
    # Up to 04:00: only what started before.
    t4 = (T0 + timedelta(hours=4)).isoformat()
    assert _names(world, _list(client, world, "admin", to=t4)) == ["cabinet", "voltage", "spike"]
    # The fall closed at 04:05: a window from 04:10 misses it, one from 04:04 sees it.
    t410 = (T0 + timedelta(hours=4, minutes=10)).isoformat()
    t404 = (T0 + timedelta(hours=4, minutes=4)).isoformat()
    assert "fall" not in _names(world, _list(client, world, "admin", **{"from": t410}))
    assert "fall" in _names(world, _list(client, world, "admin", **{"from": t404}))
    assert _list(client, world, "admin", device="nobody") == []


def test_pagination(client: TestClient, world: World, db_url: str) -> None:
    """Pages follow `next` newest first without gaps or repeats, ties on start included."""
    tenant = f"tp{uuid.uuid4().hex[:8]}"
    start = T0 + timedelta(days=1)
    made = [_anomaly(tenant, f"m-{i}", Kind.UNUSUAL_VALUE, start + timedelta(minutes=i // 3))
            for i in range(25)]  # three anomalies per start time: the id breaks ties
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant)
        token = create_token(conn, tenant=tenant, role="energy_manager")
        with conn.transaction():
            record_transitions(conn=conn, transitions=[Transition(x, "open") for x in made],
                               care=[False] * len(made))
    got: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 10}
    pages = 0
    while True:
        r = client.get("/v1/anomalies", params=params, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        body = r.json()
        got += body["items"]
        pages += 1
        if body["next"] is None:
            break
        params["after"] = body["next"]
    assert pages == 3
    assert [g["id"] for g in got] == [a.id for a in sorted(made, key=lambda a: (a.start_us, a.id),
                                                           reverse=True)]


@pytest.mark.parametrize(("params", "where"), [
    ({"kind": "falls"}, "kind: unknown kind 'falls'"),
    ({"severity": "bad"}, "severity"),
    ({"state": "maybe"}, "state"),
    ({"from": "2026-11-23T00:00:00"}, "from: give a time zone"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-11-23T02:00:00Z", "to": "2026-11-23T01:00:00Z"}, "'to' must be after 'from'"),
    ({"after": "garbage"}, "after: not a cursor"),
    ({"limit": 0}, "limit"),
    ({"limit": 5000}, "limit"),
])
def test_bad_filters(client: TestClient, world: World, params: dict[str, Any], where: str) -> None:
    """Bad filters: 422 with a message saying which parameter and why."""
    r = client.get("/v1/anomalies", params=params, headers=world.headers("admin"))
    assert r.status_code == 422
    assert where in r.json()["error"]["message"]
